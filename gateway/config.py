"""The configuration file (TOML): registries, issuers, consumers, purposes, mandates.

Validated at start-up: every error names the key at fault and why, e.g.
``mandates[0].fields: 'shoe_size' is not a field of registry.population.v1.Person``.
Relative paths are resolved against the file's folder.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from consent.model import LEGAL_BASES

__all__ = ["Config", "ConfigError", "load_config"]


class ConfigError(Exception):
    """The configuration is invalid; the message names each bad key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(_Strict):
    name: str = "Passerelle"
    audience: str = "urn:passerelle:gateway"
    rest_host: str = "127.0.0.1"
    rest_port: int = Field(8080, ge=0, le=65535)
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(50051, ge=0, le=65535)
    audit: str = "sqlite:audit.db"           # "sqlite:PATH" or a postgresql:// DSN
    consents: str = "sqlite:consents.db"
    signing_key: str = "keys/gateway-signing.pem"
    pseudonym_key: str = "keys/pseudonym.key"
    max_request_bytes: int = Field(64 * 1024, gt=0)
    max_token_bytes: int = Field(8 * 1024, gt=0)
    token_max_lifetime_s: int = Field(900, gt=0, le=86_400)
    token_leeway_s: int = Field(30, ge=0, le=300)
    default_timeout_s: float = Field(5.0, gt=0)


class IssuerSection(_Strict):
    id: str
    issuer: str
    role: Literal["agency", "citizen", "staff"]
    jwks_file: str
    algorithms: list[Literal["ES256", "ES384", "EdDSA", "RS256", "RS384", "PS256", "PS384"]] = ["ES256"]


class ConsumerSection(_Strict):
    id: str
    name: str
    issuer: str
    client_id: str


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
    contract: str                         # fully-qualified gRPC service name
    adapter: Literal["grpc", "rest"]
    target: str = ""                      # host:port, for grpc
    base_url: str = ""                    # for rest
    timeout_s: float = Field(2.0, gt=0, le=60)
    max_concurrency: int = Field(256, gt=0)
    operations: dict[str, RestOperationSection] = {}
    demo: bool = False                    # served by the demo registries (address set at start)


class PurposeSection(_Strict):
    code: str
    title: dict[str, str]
    description: dict[str, str] = {}
    legal_reference: str = ""
    legal_url: str = ""
    retention_days: int = Field(0, ge=0)

    @field_validator("title")
    @classmethod
    def _three_languages(cls, v: dict[str, str]) -> dict[str, str]:
        missing = {"fr", "de", "en"} - set(v)
        if missing:
            raise ValueError(f"title needs fr, de and en; missing {sorted(missing)}")
        return v


class MandateSection(_Strict):
    id: str
    consumer: str
    service: str                          # "package.Service/Method"
    purposes: list[str] = Field(min_length=1)
    legal_basis: str
    legal_reference: str = ""
    fields: list[str] = []
    categories: list[str] = []
    valid_from: date | None = None
    valid_until: date | None = None
    hidden_days: int = Field(0, ge=0)
    hidden_reason: str = ""

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
    base_dir: Path = Path(".")

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p


def _date_us(d: date | None) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1_000_000) if d else 0


def load_config(path: Path) -> Config:
    """Read, parse and validate; raise ``ConfigError`` naming every bad key."""
    try:
        raw = tomllib.loads(path.read_text())
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
        raise ConfigError(f"{path}: invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))
    return config


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        lines.append(f"  {loc}: {err['msg']}")
    return f"{path}: invalid configuration:\n" + "\n".join(lines)


def cross_check(config: Config) -> list[str]:
    """References between sections, and mandates against the contracts."""
    from gateway.core.contracts import load_operations

    problems: list[str] = []
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
    ops = {}
    for n, r in enumerate(config.registries):
        try:
            found = load_operations([r.contract])
        except KeyError:
            problems.append(f"registries[{n}].contract: no contract {r.contract!r} in proto/")
            continue
        ops.update(found)
        problems += _check_adapter(n, r, found)
    for n, m in enumerate(config.mandates):
        problems += _check_mandate(n, m, consumers, purposes, ops)
    return problems


def _duplicates(section: str, ids: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for n, i in enumerate(ids):
        if i in seen:
            out.append(f"{section}[{n}].id: duplicate id {i!r}")
        seen.add(i)
    return out


def _check_adapter(n: int, r: RegistrySection, found: dict[str, object]) -> list[str]:
    where = f"registries[{n}]"
    if r.adapter == "grpc" and not r.target and not r.demo:
        return [f"{where}.target: a grpc registry needs host:port"]
    if r.adapter == "rest":
        out = [] if r.base_url or r.demo else [f"{where}.base_url: a rest registry needs a base URL"]
        methods = {k.split("/")[1] for k in found}
        out += [f"{where}.operations.{m}: no mapping for this operation" for m in sorted(methods - set(r.operations))]
        out += [f"{where}.operations.{m}: not an operation of {r.contract}" for m in sorted(set(r.operations) - methods)]
        return out
    return []


def _check_mandate(n: int, m: MandateSection, consumers: set[str], purposes: set[str], ops: dict) -> list[str]:  # type: ignore[type-arg]
    where = f"mandates[{n}]"
    out = []
    if m.consumer not in consumers:
        out.append(f"{where}.consumer: unknown consumer {m.consumer!r}")
    out += [f"{where}.purposes: unknown purpose {p!r}" for p in m.purposes if p not in purposes]
    op = ops.get(m.service)
    if op is None:
        return [*out, f"{where}.service: no configured registry serves {m.service!r}"]
    fields = op.field_categories
    message = op.response_cls.DESCRIPTOR.full_name
    out += [f"{where}.fields: {f!r} is not a field of {message}" for f in m.fields if f not in fields]
    cats = set(fields.values())
    out += [f"{where}.categories: no field of {message} has category {c!r}" for c in m.categories if c not in cats]
    if not m.fields and not m.categories:
        out.append(f"{where}: a mandate must allow some fields or categories")
    if m.valid_from and m.valid_until and m.valid_until <= m.valid_from:
        out.append(f"{where}.valid_until: must be after valid_from")
    return out


def mandate_window_us(m: MandateSection) -> tuple[int, int]:
    return _date_us(m.valid_from), _date_us(m.valid_until)
