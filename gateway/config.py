"""The configuration file (TOML): registries, issuers, consumers, purposes, mandates.

Validated at start-up: every error names the key at fault and why, e.g.
``mandates[0].fields: 'shoe_size' is not a field of registry.population.v1.Person``.
Relative paths are resolved against the file's folder.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from consent import Limit, category_problem, limit_error
from consent.model import LEGAL_BASES
from gateway.config_citizen_login import CitizenLoginSection
from gateway.core.caller_text import UNKNOWN_PURPOSE, caller_id_problem
from gateway.core.change_events import load_event_streams
from gateway.core.contracts import Operation, load_operations
from gateway.core.transparency import MAX_HIDDEN_DAYS

__all__ = ["Config", "ConfigError", "KeysSection", "load_config", "signing_keys_problem"]


class ConfigError(Exception):
    """The configuration is invalid; the message names each bad key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SenderConstraint = Literal["required", "optional", "off"]


class TlsSection(_Strict):
    """gRPC over (mutual) TLS on its own port, beside the plaintext port (docs/security.md)."""

    port: int = Field(default=50052, ge=0, le=65535)
    cert: str  # server certificate chain (PEM)
    key: str  # its private key (PEM)
    # CA for client certificates (PEM). Set: every TLS client must present one (grpcio can require
    # client certificates or not ask for them, nothing between). Empty: server-authenticated TLS only.
    client_ca: str = ""
    plaintext: bool = True  # keep serving the plaintext gRPC port as well


class KeysSection(_Strict):
    """The signing keys: a PKCS#11 token, or (demo only) files in a folder of their own (docs/security.md).

    Checkpoints are signed with an Ed25519 key, consent receipts with a separate P-256 (ES256) key.
    """

    module: str = ""  # PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so; empty: no token
    token_label: str = ""
    pin_file: str = ""  # a file holding the user PIN (mode 0600), or
    pin_env: str = ""  # the name of an environment variable holding it
    checkpoint_key_label: str = "passerelle-checkpoint"  # Ed25519 key pair in the token
    receipt_key_label: str = "passerelle-receipt"  # P-256 key pair in the token
    # DEMO ONLY: file keys, accepted when `demo` is true here or the gateway runs with `serve --demo`.
    demo: bool = False
    checkpoint_file: str = "demo-signing-keys/checkpoint-ed25519.pem"
    receipt_file: str = "demo-signing-keys/receipt-p256.pem"
    # The checkpoint signer's memory of what it last signed (docs/audit-transparency.md): a file the
    # log's database administrator cannot write, owned by the key custodian. Required with a token;
    # the demo keeps it beside its key files.
    signer_state: str = ""

    @model_validator(mode="after")
    def _token_complete(self) -> KeysSection:
        if self.module and not self.token_label:
            raise ValueError("a PKCS#11 module needs token_label")
        if self.module and bool(self.pin_file) == bool(self.pin_env):
            raise ValueError("give exactly one of pin_file or pin_env for the PKCS#11 token")
        if self.module and self.checkpoint_key_label == self.receipt_key_label:
            raise ValueError("checkpoints and receipts need separate keys (checkpoint_key_label == receipt_key_label)")
        return self

    @property
    def uses_token(self) -> bool:
        return bool(self.module)

    @property
    def signer_state_file(self) -> str:
        return self.signer_state or "demo-signing-keys/checkpoint-signer-state.json"


class GatewaySection(_Strict):
    name: str = "Passerelle"
    audience: str = "urn:passerelle:gateway"
    rest_host: str = "127.0.0.1"
    rest_port: int = Field(default=8080, ge=0, le=65535)
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    audit: str = "sqlite:audit.db"  # "sqlite:PATH" or a postgresql:// DSN
    consents: str = "sqlite:consents.db"  # "sqlite:PATH" or a postgresql:// DSN (consents and run-time mandates)
    signing_key: str = ""  # unused since ADR 0006, still accepted: the signing keys are in [gateway.keys]
    pseudonym_key: str = "keys/pseudonym.key"
    max_request_bytes: int = Field(default=64 * 1024, gt=0)
    max_token_bytes: int = Field(default=8 * 1024, gt=0)
    token_max_lifetime_s: int = Field(default=900, gt=0, le=86_400)
    token_leeway_s: int = Field(default=30, ge=0, le=300)
    default_timeout_s: float = Field(default=5.0, gt=0)
    shutdown_grace_s: float = Field(default=10.0, gt=0, le=300)  # SIGTERM: drain in-flight exchanges, flush audit
    checkpoint_interval_s: float = Field(default=60.0, ge=0)  # sign an audit checkpoint this often; 0: never
    # C2SP checkpoint origin and key name of the log (a schema-less URL, no spaces or '+'); set your own.
    log_origin: str = Field(default="passerelle.demo/audit", pattern=r"^[^\s+]+$")
    witness_poll_s: float = Field(default=30.0, gt=0)  # how often the [[witnesses]]' cosignatures are fetched
    audit_retention_days: int = Field(default=0, ge=0)  # purge audit records older than this; 0: keep all
    retention_interval_s: float = Field(default=3600.0, gt=0)  # how often the retention purge runs
    demo: bool = False  # set by `gateway serve --demo`: enables demo-only routes (citizen sign-in)
    tls: TlsSection | None = None
    keys: KeysSection = KeysSection()  # checkpoint and receipt signing keys
    revocations: str = "sqlite:revocations.db"  # durable token/consumer/key revocations; or a postgresql:// DSN
    sender_constraint: SenderConstraint = "optional"  # default for consumers (cnf: mTLS / DPoP)
    dpop_max_age_s: int = Field(default=60, gt=0, le=600)  # how old a DPoP proof may be
    # DPoP proofs already used, shared by the processes: "" follows `revocations` (sqlite:dpop_replay.db beside
    # it, or its DSN), "memory" (one process), "sqlite:PATH" or a postgresql:// DSN.
    dpop_replay: str = ""
    # Where clients reach the REST door ("https://passerelle.example.lu", behind a proxy): the origin every DPoP
    # htu is checked against, never the Host header. "": the address the REST port listens on.
    public_url: str = Field(default="", pattern=r"^(https?://[^/?#\s]+(/[^?#\s]*)?)?$")
    rate_per_s: float = Field(default=1000.0, ge=0)  # per-consumer quota defaults; 0: no rate limit
    burst: int = Field(default=2000, ge=1)
    max_concurrent: int = Field(default=128, ge=0)  # 0: no concurrency limit
    citizen_rate_per_s: float = Field(default=10.0, ge=0)  # per citizen (/v1/me/...); 0: no limit
    citizen_burst: int = Field(default=100, ge=1)
    staff_rate_per_s: float = Field(default=50.0, ge=0)  # per staff member (ops and admin APIs); 0: no limit
    staff_burst: int = Field(default=500, ge=1)
    address_rate_per_s: float = Field(default=50.0, ge=0)  # routes without a token, per client address; 0: no limit
    address_burst: int = Field(default=500, ge=1)
    failed_auth_per_s: float = Field(default=10.0, ge=0)  # failed authentications per client address; 0: no limit
    failed_auth_burst: int = Field(default=1000, ge=1)
    # Quotas shared by the processes on one PostgreSQL: "" (through `audit` when it is PostgreSQL),
    # "local" (each process admits the whole quota), or a postgresql:// DSN. docs/scaling.md.
    quotas: str = ""
    # /readyz: "all" configured registries must answer their probe, "any" of them, or "ignore-registries".
    readiness: Literal["all", "any", "ignore-registries"] = "all"
    # Bulk look-ups (gRPC BulkExchange/Lookup, POST /v1/bulk:lookup): items per call, the size of the call
    # (its own limit, above max_request_bytes; 100,000 GetPerson items: ~3 MiB of JSON, ~10 MiB with
    # "@type" in each, 7.6 MiB on gRPC), items in flight per call and per consumer over its calls, how long
    # a client may read nothing before its batch stops, batches one consumer may run at a time
    # (checked before the request body is read), and the most items of one answer group (one group commit,
    # one write; also the most records a client that leaves mid-batch can leave without their answer
    # written; at most bulk_in_flight). Defaults measured: gateway/application/bulk.py GROUP_MAX.
    bulk_max_items: int = Field(default=100_000, ge=1)
    bulk_max_request_bytes: int = Field(default=12 * 1024 * 1024, gt=0)
    bulk_in_flight: int = Field(default=256, ge=1, le=4096)
    bulk_consumer_in_flight: int = Field(default=512, ge=1)
    bulk_idle_timeout_s: float = Field(default=30.0, gt=0)
    bulk_consumer_batches: int = Field(default=4, ge=1)
    bulk_group_max: int = Field(default=128, ge=1, le=4096)

    @model_validator(mode="after")
    def _bulk_group_in_window(self) -> GatewaySection:
        # Set above the window, it is refused rather than quietly cut; left unset, the default is cut to
        # the window (a configuration written for a smaller bulk_in_flight keeps starting).
        if "bulk_group_max" in self.model_fields_set and self.bulk_group_max > self.bulk_in_flight:
            raise ValueError("bulk_group_max must be at most bulk_in_flight (a group is taken from the window)")
        return self


class NotificationsSection(_Strict):
    """Change notifications (docs/decisions/0009): subscriptions, follow lists, the outbox, delivery."""

    enabled: bool = True   # read the registries' change-event rpcs and serve passerelle.gateway.v1.Subscriptions
    store: str = "sqlite:notifications.db"   # sqlite:PATH, memory or a postgresql:// DSN; unset: consents' DSN if PG
    max_subscriptions: int = Field(default=20, ge=1)   # per agency
    max_follows: int = Field(default=100_000, ge=1)   # persons on one subscription's follow list
    max_follow_batch: int = Field(default=1000, ge=1, le=10_000)   # national ids per Follow call
    max_attempts: int = Field(default=8, ge=1, le=100)   # webhook attempts, then a dead letter
    retry_base_s: float = Field(default=1.0, gt=0)   # first retry after ~this (exponential, jittered)
    retry_max_s: float = Field(default=300.0, gt=0)
    lease_s: float = Field(default=30.0, gt=0)   # a delivery's lease; an unacknowledged stream event is resent after it
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)   # one attempt, all included
    webhook_connect_timeout_s: float = Field(default=2.0, gt=0, le=60)
    workers: int = Field(default=32, ge=1, le=1024)   # webhook deliveries in flight per process
    per_subscription: int = Field(default=4, ge=1)   # of which one subscription may hold at most
    poll_s: float = Field(default=0.2, gt=0, le=10)   # outbox polling when idle
    read_batch: int = Field(default=200, ge=1, le=10_000)   # events per ingest transaction
    keep_finished_s: float = Field(default=86_400.0, ge=0)   # ended deliveries (and their events) kept this long


class WitnessSection(_Strict):
    """A witness that cosigns the log's checkpoints (docs/audit-transparency.md)."""

    name: str  # its C2SP key name, e.g. "cnpd.example/witness"
    url: str  # where it serves its cosigned checkpoint (GET {url}/checkpoint)
    public_key: str  # its Ed25519 key: a vkey (name+id+base64) or the raw 32 bytes in base64


class IssuerSection(_Strict):
    id: str
    issuer: str
    role: Literal["agency", "citizen", "staff"]
    jwks_file: str = ""  # a JWKS file, re-read when it changes
    jwks_url: str = ""  # or the issuer's JWKS URL, fetched and cached
    jwks_ttl_s: float = Field(default=300.0, gt=0)
    jwks_min_refresh_s: float = Field(default=30.0, ge=0)  # unknown kid: at most one fetch per this many seconds
    algorithms: list[Literal["ES256", "ES384", "EdDSA", "RS256", "RS384", "PS256", "PS384"]] = ["ES256"]

    @model_validator(mode="after")
    def _one_key_source(self) -> IssuerSection:
        if bool(self.jwks_file) == bool(self.jwks_url):
            raise ValueError("give exactly one of jwks_file or jwks_url")
        if self.jwks_url and not self.jwks_url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError("jwks_url must be https:// (plain http only on localhost)")
        return self


def _languages(v: dict[str, str], *, all_three: bool) -> dict[str, str]:
    """Texts per language: only fr, de and en, none empty; ``all_three``: each of them."""
    unknown, missing = set(v) - {"fr", "de", "en"}, {"fr", "de", "en"} - set(v)
    if unknown:
        raise ValueError(f"languages are fr, de and en; not {sorted(unknown)}")
    if all_three and missing:
        raise ValueError(f"needs fr, de and en; missing {sorted(missing)}")
    if any(not t.strip() for t in v.values()):
        raise ValueError("a text must not be empty")
    return v


class ConsumerSection(_Strict):
    id: str
    name: str | dict[str, str]  # one name, or { fr = "...", de = "...", en = "..." } shown in the reader's language
    issuer: str
    client_id: str
    sender_constraint: SenderConstraint | None = None  # default: [gateway].sender_constraint
    rate_per_s: float | None = Field(default=None, ge=0)  # default: the [gateway] quota values
    burst: int | None = Field(default=None, ge=1)
    max_concurrent: int | None = Field(default=None, ge=0)
    # AI systems the agency has registered (e.g. in the EU AI Act database) and may name in x-ai-system;
    # any other value is refused, so that citizens only ever see a registered system's identifier.
    ai_systems: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("name")
    @classmethod
    def _name_languages(cls, v: str | dict[str, str]) -> str | dict[str, str]:
        return v if isinstance(v, str) else _languages(v, all_three=True)

    @property
    def display_name(self) -> str:
        """The one name where a single one is needed (the consent receipt, the API's ``name``): French."""
        return self.name if isinstance(self.name, str) else self.name["fr"]

    @property
    def names(self) -> dict[str, str]:
        """The name per language (the same in each when the configuration gives one)."""
        return {lang: self.name for lang in ("fr", "de", "en")} if isinstance(self.name, str) else dict(self.name)

    @field_validator("ai_systems")
    @classmethod
    def _recordable_ids(cls, v: list[str]) -> list[str]:
        for name in v:
            problem = caller_id_problem(name) if name else "must not be empty"
            if problem:
                raise ValueError(f"{name[:64]!r}: {problem}")
        return v


class RevokedSection(_Strict):
    """Static revocations from the file (the admin API adds durable ones at run time)."""

    jtis: list[str] = []
    consumers: list[str] = []
    keys: list[str] = []  # kids


class FieldMappingSection(_Strict):
    path: str
    transform: Literal["", "string", "int", "date", "money", "enum"] = ""
    currency: str = ""
    values: dict[str, str] = {}


class RestOperationSection(_Strict):
    method: Literal["GET", "POST"] = "GET"
    path: str
    query: dict[str, str] = {}
    root: str = ""
    response: dict[str, Annotated[str | FieldMappingSection, Field(union_mode="left_to_right")]]
    not_found_status: list[int] = [404]


class RegistrySection(_Strict):
    id: str
    name: str = ""
    contract: str  # fully-qualified gRPC service name
    adapter: Literal["grpc", "rest"]
    target: str = ""  # host:port, for grpc
    base_url: str = ""  # for rest
    timeout_s: float = Field(default=2.0, gt=0, le=60)
    max_concurrency: int = Field(default=256, gt=0)  # bulkhead: calls in flight to this registry
    max_queue: int = Field(default=256, ge=0)  # bulkhead: calls waiting for a slot; beyond, refused at once
    retries: int = Field(default=2, ge=0, le=5)  # idempotent reads only, inside the caller's deadline
    breaker_failures: int = Field(default=5, ge=1)  # consecutive failures that open the circuit
    breaker_open_s: float = Field(default=5.0, gt=0)  # how long it stays open before one probe
    operations: dict[str, RestOperationSection] = {}
    demo: bool = False  # served by the demo registries (address set at start)


class PurposeSection(_Strict):
    code: str
    title: dict[str, str]
    description: dict[str, str] = {}
    legal_reference: str = ""
    legal_reference_title: dict[str, str] = {}  # the legal text named per language (fr, de, en), where known
    legal_url: str = ""
    retention_days: int = Field(default=0, ge=0)

    @field_validator("legal_reference_title")
    @classmethod
    def _reference_languages(cls, v: dict[str, str]) -> dict[str, str]:
        return _languages(v, all_three=False)

    @field_validator("code")
    @classmethod
    def _recordable_code(cls, v: str) -> str:
        # A code is recorded and shown as is; "unknown" marks a purpose outside the catalogue.
        problem = caller_id_problem(v) if v else "must not be empty"
        if problem or v == UNKNOWN_PURPOSE:
            raise ValueError(problem or f"{UNKNOWN_PURPOSE!r} is reserved for purposes outside the catalogue")
        return v

    @field_validator("title")
    @classmethod
    def _three_languages(cls, v: dict[str, str]) -> dict[str, str]:
        missing = {"fr", "de", "en"} - set(v)
        if missing:
            raise ValueError(f"title needs fr, de and en; missing {sorted(missing)}")
        return v


class LimitSection(_Strict):
    """A condition on a request field, e.g. ``{ field = "fiscal_year", op = "year_offset", values = ["-1", "0"] }``."""

    field: str
    op: str
    values: list[str] = []


class MandateSection(_Strict):
    id: str
    consumer: str
    service: str  # "package.Service/Method"
    purposes: list[str] = Field(min_length=1)
    legal_basis: str
    legal_reference: str = ""
    legal_reference_title: dict[str, str] = {}  # the legal text named per language (fr, de, en), where known
    fields: list[str] = []
    categories: list[str] = []
    valid_from: date | None = None
    valid_until: date | None = None
    hidden_days: int = Field(default=0, ge=0, le=MAX_HIDDEN_DAYS)
    hidden_reason: str = ""
    limits: list[LimitSection] = []  # all must hold (docs/consent.md)
    consent_required: bool = False  # only subjects that consented, whatever the legal basis
    explicit_request: bool = False  # each lookup needs the subject's explicit request (EU OOTS)

    @field_validator("legal_reference_title")
    @classmethod
    def _reference_languages(cls, v: dict[str, str]) -> dict[str, str]:
        return _languages(v, all_three=False)

    @field_validator("legal_basis")
    @classmethod
    def _known_basis(cls, v: str) -> str:
        if v not in LEGAL_BASES:
            raise ValueError(f"unknown legal basis {v!r}; one of {sorted(LEGAL_BASES)}")
        return v


class Config(_Strict):
    gateway: GatewaySection = GatewaySection()
    issuers: list[IssuerSection] = []
    consumers: list[ConsumerSection] = []
    registries: list[RegistrySection] = []
    purposes: list[PurposeSection] = []
    mandates: list[MandateSection] = []
    revoked: RevokedSection = RevokedSection()
    witnesses: list[WitnessSection] = []
    citizen_login: CitizenLoginSection | None = None  # eID sign-in at /me/ (OpenID Connect)
    notifications: NotificationsSection = NotificationsSection()  # change notifications (docs/decisions/0009)
    base_dir: Path = Path(".")

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p


def _date_us(d: date | None) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1_000_000) if d else 0


def load_config(path: Path) -> Config:
    """Read, parse and validate; raise ``ConfigError`` naming every bad key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        config = Config.model_validate({**raw, "base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None
    problems = cross_check(config)
    if problems:
        raise ConfigError("\n".join(f"{path}: {p}" for p in problems))   # one line per problem
    return config


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        lines.append(f"{path}: {loc or '(top level)'}: {err['msg']}")
    return "\n".join(lines)


def cross_check(config: Config) -> list[str]:
    """References between sections, and mandates against the contracts."""
    problems = [f"{section}: none configured ([[{section}]]): {why}" for section, why in (
        ("registries", "the gateway would have nothing to serve"),
        ("issuers", "no token could be verified")) if not getattr(config, section)]  # fmt: skip
    issuers = {i.id for i in config.issuers}
    consumers = {c.id for c in config.consumers}
    purposes = {p.code for p in config.purposes}
    problems += _duplicates("issuers", [i.id for i in config.issuers])
    problems += _duplicates("consumers", [c.id for c in config.consumers])
    problems += _duplicates("registries", [r.id for r in config.registries])
    problems += _duplicates("mandates", [m.id for m in config.mandates])
    for n, c in enumerate(config.consumers):
        if c.issuer not in issuers:
            problems.append(f"consumers[{n}].issuer: unknown issuer {c.issuer!r}")
    problems += [
        f"revoked.consumers[{n}]: unknown consumer {c!r}"
        for n, c in enumerate(config.revoked.consumers)
        if c not in consumers
    ]
    ops: dict[str, Operation] = {}
    for n, r in enumerate(config.registries):
        try:
            found = load_operations([r.contract])
        except KeyError:
            problems.append(f"registries[{n}].contract: no contract {r.contract!r} in proto/")
            continue
        ops.update(found)
        try:   # mandates may name a change-event rpc: their fields are the event's payload's
            ops.update({name: s.payload for name, s in load_event_streams([r.contract]).items()})
        except ValueError as exc:
            problems.append(f"registries[{n}].contract: {exc}")
        problems += _check_adapter(n, r, found)
    for n, m in enumerate(config.mandates):
        problems += _check_mandate(n, m, consumers, purposes, ops)
    keys_problem = signing_keys_problem(config)
    return [*problems, keys_problem] if keys_problem else problems


def _duplicates(section: str, ids: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for n, i in enumerate(ids):
        if i in seen:
            out.append(f"{section}[{n}].id: duplicate id {i!r}")
        seen.add(i)
    return out


def _check_adapter(n: int, r: RegistrySection, found: Mapping[str, object]) -> list[str]:
    where = f"registries[{n}]"
    if r.adapter == "grpc" and not r.target and not r.demo:
        return [f"{where}.target: a grpc registry needs host:port"]
    if r.adapter == "rest":
        out = [] if r.base_url or r.demo else [f"{where}.base_url: a rest registry needs a base URL"]
        methods = {k.split("/")[1] for k in found}
        out += [f"{where}.operations.{m}: no mapping for this operation" for m in sorted(methods - set(r.operations))]
        out += [
            f"{where}.operations.{m}: not an operation of {r.contract}" for m in sorted(set(r.operations) - methods)
        ]
        return out
    return []


def _check_mandate(
    n: int, m: MandateSection, consumers: set[str], purposes: set[str], ops: dict[str, Operation]
) -> list[str]:
    where = f"mandates[{n}]"
    out = []
    if m.consumer not in consumers:
        out.append(f"{where}.consumer: unknown consumer {m.consumer!r}")
    out += [f"{where}.purposes: unknown purpose {p!r}" for p in m.purposes if p not in purposes]
    op = ops.get(m.service)
    if op is None:
        return [*out, f"{where}.service: no configured registry serves {m.service!r}"]
    fields = op.field_categories   # top-level names and dotted paths of nested fields
    message = op.response_cls.DESCRIPTOR.full_name
    out += [f"{where}.fields: {f!r} is not a field of {message}" for f in m.fields if f not in fields]
    problems = (category_problem(c, fields, message) for c in m.categories)
    out += [f"{where}.categories: {p}" for p in problems if p]
    if not m.fields and not m.categories:
        out.append(f"{where}: a mandate must allow some fields or categories")
    if m.valid_from and m.valid_until and m.valid_until <= m.valid_from:
        out.append(f"{where}.valid_until: must be after valid_from")
    out += _check_limits(where, m, op)
    return out


def _check_limits(where: str, m: MandateSection, op: Operation) -> list[str]:
    names = op.request_descriptor.fields_by_name
    out = []
    for i, lim in enumerate(m.limits):
        problem = limit_error(Limit(lim.field, lim.op, tuple(lim.values)))
        if not problem and lim.field not in names:
            problem = f"{lim.field!r} is not a request field of {m.service}"
        if problem:
            out.append(f"{where}.limits[{i}]: {problem}")
    return out


def signing_keys_problem(config: Config) -> str:
    """Outside demo mode a file key is refused: one line naming the key, or "" when the keys are acceptable."""
    keys = config.gateway.keys
    if keys.uses_token and not keys.signer_state:
        return ("gateway.keys.signer_state: a PKCS#11 checkpoint key needs a signer state file, kept by the key "
                "custodian where the log's database administrator cannot write (docs/audit-transparency.md)")
    if keys.uses_token or keys.demo or config.gateway.demo:
        return ""
    return (f"gateway.keys: the file key {keys.checkpoint_file!r} is allowed only in demo mode ([gateway.keys] "
            "demo = true); configure a PKCS#11 token (module, token_label, pin_file) as in docs/security.md")


def mandate_window_us(m: MandateSection) -> tuple[int, int]:
    return _date_us(m.valid_from), _date_us(m.valid_until)
