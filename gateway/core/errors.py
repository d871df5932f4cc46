"""One error model for both front doors.

Every refusal or failure is a ``GatewayError`` carrying a stable ``Reason``.
The table ``REASONS`` maps each reason to its gRPC status code, HTTP status and
a short public title; the front doors render it as ``google.rpc.Status`` with an
``ErrorInfo`` detail (gRPC) or as RFC 9457 ``application/problem+json`` (REST).

    GatewayError
    ├── authentication  TOKEN_MISSING, TOKEN_MALFORMED, TOKEN_INVALID, TOKEN_EXPIRED, ...
    ├── request         INVALID_ARGUMENT, PURPOSE_MISSING, UNKNOWN_SERVICE, REQUEST_TOO_LARGE, HEADERS_TOO_LARGE,
    │                   DUPLICATE_HEADER, METHOD_NOT_ALLOWED (REST only), UNSUPPORTED_MEDIA_TYPE (REST only),
    │                   CALLER_FIELD_INVALID
    ├── authorisation   UNKNOWN_PURPOSE, NO_MANDATE, MANDATE_*, CONSENT_*
    ├── quota           RATE_LIMITED, CONCURRENCY_LIMITED
    ├── citizen sign-in SIGN_IN_* (OpenID Connect at /me/auth/), SESSION_INVALID, CSRF_TOKEN_INVALID,
    │                   CROSS_ORIGIN_REFUSED
    ├── registry        SUBJECT_NOT_FOUND, REGISTRY_UNAVAILABLE, REGISTRY_TIMEOUT, REGISTRY_BAD_RESPONSE
    └── gateway         AUDIT_UNAVAILABLE, INTERNAL

Messages are public: they must never contain personal data, tokens or stack traces.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from grpc import StatusCode

__all__ = ["DOMAIN", "REASONS", "GatewayError", "Reason", "ReasonInfo"]

DOMAIN = "passerelle.gateway"


class Reason(StrEnum):
    TOKEN_MISSING = "TOKEN_MISSING"
    TOKEN_MALFORMED = "TOKEN_MALFORMED"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_NOT_YET_VALID = "TOKEN_NOT_YET_VALID"
    TOKEN_LIFETIME_TOO_LONG = "TOKEN_LIFETIME_TOO_LONG"
    TOKEN_REVOKED = "TOKEN_REVOKED"
    TOKEN_TOO_LARGE = "TOKEN_TOO_LARGE"
    TOKEN_CLAIM_MISSING = "TOKEN_CLAIM_MISSING"
    TOKEN_CLAIM_INVALID = "TOKEN_CLAIM_INVALID"
    TOKEN_WRONG_AUDIENCE = "TOKEN_WRONG_AUDIENCE"
    UNKNOWN_ISSUER = "UNKNOWN_ISSUER"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    UNKNOWN_CONSUMER = "UNKNOWN_CONSUMER"
    SENDER_CONSTRAINT_FAILED = "SENDER_CONSTRAINT_FAILED"
    DPOP_PROOF_INVALID = "DPOP_PROOF_INVALID"
    DPOP_REPLAY_UNAVAILABLE = "DPOP_REPLAY_UNAVAILABLE"
    WRONG_TOKEN_SCOPE = "WRONG_TOKEN_SCOPE"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    CALLER_FIELD_INVALID = "CALLER_FIELD_INVALID"
    PURPOSE_MISSING = "PURPOSE_MISSING"
    UNKNOWN_SERVICE = "UNKNOWN_SERVICE"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    DUPLICATE_HEADER = "DUPLICATE_HEADER"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    NOT_FOUND = "NOT_FOUND"
    UNKNOWN_PURPOSE = "UNKNOWN_PURPOSE"
    NO_MANDATE = "NO_MANDATE"
    MANDATE_NOT_YET_VALID = "MANDATE_NOT_YET_VALID"
    MANDATE_EXPIRED = "MANDATE_EXPIRED"
    MANDATE_LIMIT = "MANDATE_LIMIT"
    FIELD_NOT_ALLOWED = "FIELD_NOT_ALLOWED"
    CONSENT_REQUIRED = "CONSENT_REQUIRED"
    CONSENT_REVOKED = "CONSENT_REVOKED"
    CONSENT_EXPIRED = "CONSENT_EXPIRED"
    CONSENT_SPENT = "CONSENT_SPENT"
    CONSENT_MISMATCH = "CONSENT_MISMATCH"
    SUBJECT_MISMATCH = "SUBJECT_MISMATCH"
    RATE_LIMITED = "RATE_LIMITED"
    CONCURRENCY_LIMITED = "CONCURRENCY_LIMITED"
    SUBJECT_NOT_FOUND = "SUBJECT_NOT_FOUND"
    REGISTRY_UNAVAILABLE = "REGISTRY_UNAVAILABLE"
    REGISTRY_TIMEOUT = "REGISTRY_TIMEOUT"
    REGISTRY_BAD_RESPONSE = "REGISTRY_BAD_RESPONSE"
    AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"
    INTERNAL = "INTERNAL"
    SIGN_IN_STATE_INVALID = "SIGN_IN_STATE_INVALID"
    SIGN_IN_PROVIDER_ERROR = "SIGN_IN_PROVIDER_ERROR"
    SIGN_IN_PROVIDER_UNAVAILABLE = "SIGN_IN_PROVIDER_UNAVAILABLE"
    SIGN_IN_CODE_REFUSED = "SIGN_IN_CODE_REFUSED"
    SIGN_IN_TOKEN_INVALID = "SIGN_IN_TOKEN_INVALID"
    SIGN_IN_WRONG_AUDIENCE = "SIGN_IN_WRONG_AUDIENCE"
    SIGN_IN_TOKEN_EXPIRED = "SIGN_IN_TOKEN_EXPIRED"
    SIGN_IN_NONCE_MISMATCH = "SIGN_IN_NONCE_MISMATCH"
    SIGN_IN_ASSURANCE_TOO_LOW = "SIGN_IN_ASSURANCE_TOO_LOW"
    SIGN_IN_SUBJECT_INVALID = "SIGN_IN_SUBJECT_INVALID"
    SESSION_INVALID = "SESSION_INVALID"
    CSRF_TOKEN_INVALID = "CSRF_TOKEN_INVALID"
    CROSS_ORIGIN_REFUSED = "CROSS_ORIGIN_REFUSED"


@dataclass(frozen=True, slots=True)
class ReasonInfo:
    grpc: StatusCode
    http: int
    title: str


_S = StatusCode
REASONS: dict[Reason, ReasonInfo] = {
    Reason.TOKEN_MISSING: ReasonInfo(_S.UNAUTHENTICATED, 401, "No bearer token was presented"),
    Reason.TOKEN_MALFORMED: ReasonInfo(_S.UNAUTHENTICATED, 401, "The token is not a well-formed JWT"),
    Reason.TOKEN_INVALID: ReasonInfo(_S.UNAUTHENTICATED, 401, "The token failed verification"),
    Reason.TOKEN_EXPIRED: ReasonInfo(_S.UNAUTHENTICATED, 401, "The token has expired"),
    Reason.TOKEN_NOT_YET_VALID: ReasonInfo(_S.UNAUTHENTICATED, 401, "The token is not valid yet"),
    Reason.TOKEN_LIFETIME_TOO_LONG: ReasonInfo(_S.UNAUTHENTICATED, 401, "The token lives longer than allowed"),
    Reason.TOKEN_REVOKED: ReasonInfo(_S.UNAUTHENTICATED, 401, "The token or its consumer was revoked"),
    Reason.TOKEN_TOO_LARGE: ReasonInfo(_S.UNAUTHENTICATED, 401, "The token exceeds the size limit"),
    Reason.TOKEN_CLAIM_MISSING: ReasonInfo(_S.UNAUTHENTICATED, 401, "The token lacks a required claim"),
    Reason.TOKEN_CLAIM_INVALID: ReasonInfo(_S.UNAUTHENTICATED, 401, "A token claim has the wrong type or value"),
    Reason.TOKEN_WRONG_AUDIENCE: ReasonInfo(_S.UNAUTHENTICATED, 401, "The token is meant for another audience"),
    Reason.UNKNOWN_ISSUER: ReasonInfo(_S.UNAUTHENTICATED, 401, "The token's issuer is not trusted"),
    Reason.UNKNOWN_KEY: ReasonInfo(_S.UNAUTHENTICATED, 401, "The token's signing key is unknown"),
    Reason.UNKNOWN_CONSUMER: ReasonInfo(_S.UNAUTHENTICATED, 401, "The token's subject is not a registered consumer"),
    Reason.SENDER_CONSTRAINT_FAILED: ReasonInfo(
        _S.UNAUTHENTICATED, 401, "The token is not bound to this sender"
    ),
    Reason.DPOP_PROOF_INVALID: ReasonInfo(_S.UNAUTHENTICATED, 401, "The DPoP proof is missing, invalid or reused"),
    Reason.DPOP_REPLAY_UNAVAILABLE: ReasonInfo(
        _S.UNAVAILABLE, 503, "DPoP proofs cannot be checked for reuse right now"
    ),
    Reason.WRONG_TOKEN_SCOPE: ReasonInfo(_S.PERMISSION_DENIED, 403, "The token's scope does not allow this"),
    Reason.INVALID_ARGUMENT: ReasonInfo(_S.INVALID_ARGUMENT, 400, "A request field is invalid"),
    Reason.CALLER_FIELD_INVALID: ReasonInfo(
        _S.INVALID_ARGUMENT, 400, "A caller identifier (case, officer, AI system, consent or request id) is invalid"
    ),
    Reason.PURPOSE_MISSING: ReasonInfo(_S.INVALID_ARGUMENT, 400, "The request states no purpose (x-purpose)"),
    Reason.UNKNOWN_SERVICE: ReasonInfo(_S.UNIMPLEMENTED, 404, "No such service or operation"),
    Reason.REQUEST_TOO_LARGE: ReasonInfo(_S.RESOURCE_EXHAUSTED, 413, "The request exceeds the size limit"),
    Reason.HEADERS_TOO_LARGE: ReasonInfo(_S.RESOURCE_EXHAUSTED, 431, "The request headers exceed the size limit"),
    Reason.DUPLICATE_HEADER: ReasonInfo(_S.INVALID_ARGUMENT, 400, "A single-valued header or metadata key is repeated"),
    Reason.METHOD_NOT_ALLOWED: ReasonInfo(_S.UNIMPLEMENTED, 405, "The route does not answer this HTTP method"),
    Reason.UNSUPPORTED_MEDIA_TYPE: ReasonInfo(
        _S.INVALID_ARGUMENT, 415, "The body must be application/json (UTF-8) without a content coding"
    ),
    Reason.NOT_FOUND: ReasonInfo(_S.NOT_FOUND, 404, "No such resource"),
    Reason.UNKNOWN_PURPOSE: ReasonInfo(_S.PERMISSION_DENIED, 403, "The stated purpose is not in the catalogue"),
    Reason.NO_MANDATE: ReasonInfo(_S.PERMISSION_DENIED, 403, "No mandate allows this consumer, service and purpose"),
    Reason.MANDATE_NOT_YET_VALID: ReasonInfo(_S.PERMISSION_DENIED, 403, "The mandate is not valid yet"),
    Reason.MANDATE_EXPIRED: ReasonInfo(_S.PERMISSION_DENIED, 403, "The mandate has expired"),
    Reason.MANDATE_LIMIT: ReasonInfo(_S.PERMISSION_DENIED, 403, "The request is outside the mandate's limits"),
    Reason.FIELD_NOT_ALLOWED: ReasonInfo(_S.PERMISSION_DENIED, 403, "A requested field is outside the mandate"),
    Reason.CONSENT_REQUIRED: ReasonInfo(_S.PERMISSION_DENIED, 403, "The data subject's consent is required"),
    Reason.CONSENT_REVOKED: ReasonInfo(_S.PERMISSION_DENIED, 403, "The data subject revoked the consent"),
    Reason.CONSENT_EXPIRED: ReasonInfo(_S.PERMISSION_DENIED, 403, "The consent has expired"),
    Reason.CONSENT_SPENT: ReasonInfo(_S.PERMISSION_DENIED, 403, "The one-exchange consent was already used"),
    Reason.CONSENT_MISMATCH: ReasonInfo(
        _S.PERMISSION_DENIED, 403, "The consent does not cover this consumer, purpose or subject"
    ),
    Reason.SUBJECT_MISMATCH: ReasonInfo(_S.PERMISSION_DENIED, 403, "A citizen may act only for themselves"),
    Reason.RATE_LIMITED: ReasonInfo(_S.RESOURCE_EXHAUSTED, 429, "Rate limit exceeded"),
    Reason.CONCURRENCY_LIMITED: ReasonInfo(_S.RESOURCE_EXHAUSTED, 429, "Too many concurrent requests"),
    Reason.SUBJECT_NOT_FOUND: ReasonInfo(_S.NOT_FOUND, 404, "The registry has no entry for this subject"),
    Reason.REGISTRY_UNAVAILABLE: ReasonInfo(_S.UNAVAILABLE, 503, "The registry is unavailable"),
    Reason.REGISTRY_TIMEOUT: ReasonInfo(_S.DEADLINE_EXCEEDED, 504, "The registry did not answer in time"),
    Reason.REGISTRY_BAD_RESPONSE: ReasonInfo(_S.UNAVAILABLE, 502, "The registry gave an invalid answer"),
    Reason.AUDIT_UNAVAILABLE: ReasonInfo(_S.UNAVAILABLE, 503, "The exchange could not be recorded"),
    Reason.INTERNAL: ReasonInfo(_S.INTERNAL, 500, "Internal gateway error"),
    Reason.SIGN_IN_STATE_INVALID: ReasonInfo(
        _S.UNAUTHENTICATED, 400, "The sign-in is unknown, already finished or too old; start it again"
    ),
    Reason.SIGN_IN_PROVIDER_ERROR: ReasonInfo(_S.UNAUTHENTICATED, 401, "The identity provider did not sign you in"),
    Reason.SIGN_IN_PROVIDER_UNAVAILABLE: ReasonInfo(_S.UNAVAILABLE, 503, "The identity provider cannot be reached"),
    Reason.SIGN_IN_CODE_REFUSED: ReasonInfo(
        _S.UNAUTHENTICATED, 401, "The identity provider refused the sign-in code (used already, or expired)"
    ),
    Reason.SIGN_IN_TOKEN_INVALID: ReasonInfo(_S.UNAUTHENTICATED, 401, "The ID token failed verification"),
    Reason.SIGN_IN_WRONG_AUDIENCE: ReasonInfo(_S.UNAUTHENTICATED, 401, "The ID token is meant for another client"),
    Reason.SIGN_IN_TOKEN_EXPIRED: ReasonInfo(_S.UNAUTHENTICATED, 401, "The ID token has expired"),
    Reason.SIGN_IN_NONCE_MISMATCH: ReasonInfo(
        _S.UNAUTHENTICATED, 401, "The ID token does not belong to this sign-in (nonce)"
    ),
    Reason.SIGN_IN_ASSURANCE_TOO_LOW: ReasonInfo(
        _S.PERMISSION_DENIED, 403, "The sign-in's level of assurance is below the one required"
    ),
    Reason.SIGN_IN_SUBJECT_INVALID: ReasonInfo(
        _S.PERMISSION_DENIED, 403, "The identity provider named no valid national identification number"
    ),
    Reason.SESSION_INVALID: ReasonInfo(_S.UNAUTHENTICATED, 401, "No session, or it has ended or expired"),
    Reason.CSRF_TOKEN_INVALID: ReasonInfo(
        _S.PERMISSION_DENIED, 403, "The request lacks the session's anti-forgery token"
    ),
    Reason.CROSS_ORIGIN_REFUSED: ReasonInfo(_S.PERMISSION_DENIED, 403, "A request from another site was refused"),
}


class GatewayError(Exception):
    """A refusal or failure with a stable reason code and a public message."""

    def __init__(
        self,
        reason: Reason,
        detail: str = "",
        *,
        field: str = "",
        retry_after: float | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.reason = reason
        self.detail = detail or REASONS[reason].title
        self.field = field
        self.retry_after = retry_after
        self.metadata = dict(metadata or {})
        if field:
            self.metadata.setdefault("field", field)
        super().__init__(f"{reason}: {self.detail}")

    @property
    def info(self) -> ReasonInfo:
        return REASONS[self.reason]
