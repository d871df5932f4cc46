"""Strict token and DPoP claims: every claim has one type, time claims are finite NumericDates.

Tokens here are correctly signed: only their claims are odd. Python's ``json`` (and so PyJWT)
reads ``NaN`` and ``Infinity``; the gateway must not.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.auth import Issuer, TokenVerifier
from gateway.core.dpop import ReplayCache, key_thumbprint, make_proof, verify_proof
from gateway.core.errors import GatewayError, Reason

ISS = {"agency": "https://idp.test/agencies", "citizen": "https://eid.test", "staff": "https://idp.test/staff"}
AUD = "urn:passerelle:gateway"
NOW = 1_800_000_000.0
ROLES = sorted(ISS)


def verifier() -> tuple[TokenVerifier, Any]:
    private = ec.generate_private_key(ec.SECP256R1())
    issuers = {role: Issuer(role, iss, role, frozenset({"ES256"}), {"k1": private.public_key()})
               for role, iss in ISS.items()}
    v = TokenVerifier(issuers, {("agency", "cedies"): "cedies"}, audience=AUD, clock=lambda: NOW)
    return v, private


def claims(role: str, **overrides: Any) -> dict[str, Any]:
    sub = {"agency": "cedies", "citizen": "1991062434054", "staff": "ops-1"}[role]
    body: dict[str, Any] = {"iss": ISS[role], "aud": AUD, "sub": sub, "iat": int(NOW), "nbf": int(NOW),
                            "exp": int(NOW) + 300, "jti": uuid.uuid4().hex}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def signed_bytes(private: Any, payload: bytes) -> str:
    """A token over these exact payload bytes (duplicated members, literal NaN ...)."""
    return jwt.api_jws.PyJWS().encode(payload, private, algorithm="ES256", headers={"kid": "k1"})


def signed(private: Any, body: dict[str, Any], **header: Any) -> str:
    """Signed over ``json.dumps`` (which writes NaN and Infinity), whatever the claims' types."""
    return jwt.api_jws.PyJWS().encode(json.dumps(body).encode(), private, algorithm="ES256",
                                      headers={"kid": "k1", **header})


def refusal(v: TokenVerifier, token: str) -> GatewayError:
    with pytest.raises(GatewayError) as exc:
        v.verify(token)
    return exc.value


BAD_TIMES: list[tuple[str, Any]] = [
    ("NaN", float("nan")),
    ("Infinity", float("inf")),
    ("-Infinity", float("-inf")),
    ("true", True),
    ("string", "1800000300"),
    ("null", None),
    ("object", {"at": 1}),
    ("list", [1800000300]),
    ("negative", -1),
    ("beyond year 9999", 253_402_300_800),
    ("beyond int64", 99_999_999_999_999_999_999_999),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "auth_time"])
@pytest.mark.parametrize(("case", "value"), BAD_TIMES, ids=[c for c, _ in BAD_TIMES])
def test_a_time_claim_that_is_not_a_finite_date_is_refused_naming_the_claim(
    role: str, claim: str, case: str, value: Any
) -> None:
    v, private = verifier()
    err = refusal(v, signed(private, claims(role, **{claim: value})))
    assert (err.reason, err.metadata["claim"]) == (Reason.TOKEN_CLAIM_INVALID, claim)
    assert f"'{claim}'" in err.detail


def test_exp_nan_does_not_make_a_token_that_never_expires() -> None:
    v, private = verifier()
    t = signed_bytes(private, json.dumps(claims("agency", exp=float("nan"))).encode())
    assert b"NaN" in jwt.api_jws.PyJWS().decode_complete(t, options={"verify_signature": False})["payload"]
    assert refusal(v, t).reason is Reason.TOKEN_CLAIM_INVALID


def test_iat_nan_does_not_bypass_the_lifetime_cap() -> None:
    v, private = verifier()
    ten_years = int(NOW) + 10 * 365 * 86_400
    t = signed(private, claims("agency", iat=float("nan"), nbf=..., exp=ten_years))
    err = refusal(v, t)
    assert (err.reason, err.metadata["claim"]) == (Reason.TOKEN_CLAIM_INVALID, "iat")


@pytest.mark.parametrize("role", ROLES)
def test_fractional_seconds_are_accepted(role: str) -> None:
    """NumericDates may be non-integer (RFC 7519 §2); finite ones are accepted."""
    v, private = verifier()
    t = signed(private, claims(role, iat=NOW - 0.5, nbf=NOW - 0.5, exp=NOW + 299.5))
    assert v.verify(t).expires_at == NOW + 299.5


BAD_STRINGS: list[tuple[str, Any]] = [
    ("number", 7),
    ("true", True),
    ("null", None),
    ("empty", ""),
    ("list", ["a"]),
    ("object", {"a": "b"}),
    ("too long", "x" * 5000),
]
#: Proofs are at most 4 KB: their "too long" is shorter.
BAD_PROOF_STRINGS = [*BAD_STRINGS[:-1], ("too long", "x" * 2000)]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("claim", ["iss", "sub", "jti", "scope", "client_id", "azp"])
@pytest.mark.parametrize(("case", "value"), BAD_STRINGS, ids=[c for c, _ in BAD_STRINGS])
def test_a_string_claim_of_another_type_is_refused_naming_the_claim(
    role: str, claim: str, case: str, value: Any
) -> None:
    v, private = verifier()
    if claim == "scope" and value == "":   # an empty scope is a scope with no entries
        assert v.verify(signed(private, claims(role, scope=""))).scopes == frozenset()
        return
    err = refusal(v, signed(private, claims(role, **{claim: value})))
    assert (err.reason, err.metadata["claim"]) == (Reason.TOKEN_CLAIM_INVALID, claim)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "aud", [7, None, True, [], [AUD, 7], [AUD, None], {"aud": AUD}, [AUD] * 40], ids=repr,
)
def test_an_audience_that_is_not_a_string_or_list_of_strings_is_refused(role: str, aud: Any) -> None:
    v, private = verifier()
    err = refusal(v, signed(private, claims(role, aud=aud)))
    assert (err.reason, err.metadata["claim"]) == (Reason.TOKEN_CLAIM_INVALID, "aud")


@pytest.mark.parametrize("role", ROLES)
def test_an_audience_list_of_strings_is_accepted(role: str) -> None:
    v, private = verifier()
    assert v.verify(signed(private, claims(role, aud=["urn:other", AUD]))).kind


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("cnf", "claim"),
    [("jkt", "cnf"), (["jkt"], "cnf"), (7, "cnf"), ({"jkt": 7}, "cnf.jkt"), ({"jkt": ""}, "cnf.jkt"),
     ({"x5t#S256": ["a"]}, "cnf.x5t#S256"), ({"jkt": "x" * 200}, "cnf.jkt")],
    ids=repr,
)
def test_a_confirmation_claim_of_the_wrong_shape_is_refused(role: str, cnf: Any, claim: str) -> None:
    v, private = verifier()
    err = refusal(v, signed(private, claims(role, cnf=cnf)))
    assert (err.reason, err.metadata["claim"]) == (Reason.TOKEN_CLAIM_INVALID, claim)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "exp", "iat", "jti"])
def test_a_missing_required_claim_is_named(role: str, claim: str) -> None:
    v, private = verifier()
    err = refusal(v, signed(private, claims(role, **{claim: ...})))
    assert (err.reason, err.metadata["claim"]) == (Reason.TOKEN_CLAIM_MISSING, claim)


@pytest.mark.parametrize("role", ROLES)
def test_a_duplicated_claim_is_refused_as_malformed(role: str) -> None:
    """A proxy reading the first ``sub`` and the gateway the last must not disagree: neither is read."""
    v, private = verifier()
    body = json.dumps(claims(role))[:-1] + ', "sub": "someone-else"}'
    assert refusal(v, signed_bytes(private, body.encode())).reason is Reason.TOKEN_MALFORMED


def test_a_nan_in_the_header_is_refused_as_malformed() -> None:
    v, private = verifier()
    t = signed(private, claims("agency"), **{"x-n": float("nan")})
    assert refusal(v, t).reason is Reason.TOKEN_MALFORMED


def test_refusals_never_quote_the_claim_value() -> None:
    v, private = verifier()
    err = refusal(v, signed(private, claims("citizen", sub=["1991062434054"])))
    assert "1991062434054" not in err.detail and "1991062434054" not in str(err.metadata)


# --- DPoP proofs ---------------------------------------------------------------------------------------

URL = "https://gw.test/v1/population/persons/1"


def proof_with(key: Any, **overrides: Any) -> str:
    body: dict[str, Any] = {"jti": uuid.uuid4().hex, "htm": "GET", "htu": URL, "iat": int(NOW), "ath": _ath("tok")}
    body.update(overrides)
    body = {k: v for k, v in body.items() if v is not ...}
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return jwt.api_jws.PyJWS().encode(json.dumps(body).encode(), key, algorithm="ES256",
                                      headers={"typ": "dpop+jwt", "jwk": jwk})


def _ath(token: str) -> str:
    from gateway.core.dpop import token_hash

    return token_hash(token)


def proof_refusal(proof: str) -> GatewayError:
    with pytest.raises(GatewayError) as exc:
        verify_proof(proof, method="GET", url=URL, access_token="tok", now=NOW, max_age_s=60, leeway_s=5,
                     replay=ReplayCache(60, clock=lambda: NOW))
    return exc.value


@pytest.mark.parametrize(("case", "value"), BAD_TIMES, ids=[c for c, _ in BAD_TIMES])
def test_a_proof_iat_that_is_not_a_finite_date_is_refused(case: str, value: Any) -> None:
    err = proof_refusal(proof_with(ec.generate_private_key(ec.SECP256R1()), iat=value))
    assert (err.reason, err.metadata["claim"]) == (Reason.DPOP_PROOF_INVALID, "iat")


@pytest.mark.parametrize("claim", ["htm", "htu", "jti", "ath"])
@pytest.mark.parametrize(("case", "value"), BAD_PROOF_STRINGS, ids=[c for c, _ in BAD_PROOF_STRINGS])
def test_a_proof_string_claim_of_another_type_is_refused(claim: str, case: str, value: Any) -> None:
    err = proof_refusal(proof_with(ec.generate_private_key(ec.SECP256R1()), **{claim: value}))
    assert err.reason is Reason.DPOP_PROOF_INVALID
    assert err.metadata.get("claim") == claim


@pytest.mark.parametrize("claim", ["jti", "htm", "htu", "iat"])
def test_a_proof_without_a_required_claim_is_refused_naming_it(claim: str) -> None:
    err = proof_refusal(proof_with(ec.generate_private_key(ec.SECP256R1()), **{claim: ...}))
    assert (err.reason, err.metadata["claim"]) == (Reason.DPOP_PROOF_INVALID, claim)


def test_a_nan_in_a_claim_the_gateway_does_not_read_is_refused_too() -> None:
    v, private = verifier()
    err = refusal(v, signed(private, claims("agency", x_extra={"deep": [1.0, float("-inf")]})))
    assert (err.reason, err.metadata["claim"]) == (Reason.TOKEN_CLAIM_INVALID, "x_extra")


def test_a_proof_with_nan_exp_is_refused() -> None:
    err = proof_refusal(proof_with(ec.generate_private_key(ec.SECP256R1()), exp=float("nan")))
    assert (err.reason, err.metadata["claim"]) == (Reason.DPOP_PROOF_INVALID, "exp")


def test_a_well_formed_proof_still_passes() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    proof = make_proof(key, "GET", URL, "tok", now=NOW)
    got = verify_proof(proof, method="GET", url=URL, access_token="tok", now=NOW, max_age_s=60, leeway_s=5,
                       replay=ReplayCache(60, clock=time.time))
    assert got == key_thumbprint(key)
