"""Mandates as plain dicts (JSON documents in the mandate store, TOML tables in the configuration)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from consent.model import Limit, Mandate

__all__ = ["date_us", "mandate_from_dict", "mandate_to_dict", "us_date"]


def date_us(value: object) -> int:
    """A date (object or ``YYYY-MM-DD``), an epoch-µs int, or empty → epoch microseconds (0 = open)."""
    if value in (None, "", 0):
        return 0
    if isinstance(value, int):
        return value
    d = value if isinstance(value, date) else date.fromisoformat(str(value))
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1_000_000)


def us_date(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).date().isoformat() if us else ""


def mandate_from_dict(d: Mapping[str, Any]) -> Mandate:
    """Build a mandate from a configuration table or a stored document; raises KeyError/ValueError."""
    return Mandate(
        id=str(d["id"]),
        consumer=str(d["consumer"]),
        service=str(d["service"]),
        purposes=frozenset(d["purposes"]),
        legal_basis=str(d["legal_basis"]),
        legal_reference=str(d.get("legal_reference", "")),
        fields=frozenset(d.get("fields", ())),
        categories=frozenset(d.get("categories", ())),
        valid_from_us=date_us(d.get("valid_from")),
        valid_until_us=date_us(d.get("valid_until")),
        hidden_days=int(d.get("hidden_days", 0)),
        hidden_reason=str(d.get("hidden_reason", "")),
        limits=tuple(
            Limit(str(x["field"]), str(x["op"]), tuple(str(v) for v in x.get("values", ())))
            for x in d.get("limits", ())
        ),
        consent_required=bool(d.get("consent_required", False)),
        explicit_request=bool(d.get("explicit_request", False)),
    )


def mandate_to_dict(m: Mandate) -> dict[str, Any]:
    """The inverse of ``mandate_from_dict`` (dates as ``YYYY-MM-DD``, sets sorted)."""
    return {
        "id": m.id,
        "consumer": m.consumer,
        "service": m.service,
        "purposes": sorted(m.purposes),
        "legal_basis": m.legal_basis,
        "legal_reference": m.legal_reference,
        "fields": sorted(m.fields),
        "categories": sorted(m.categories),
        "valid_from": us_date(m.valid_from_us),
        "valid_until": us_date(m.valid_until_us),
        "hidden_days": m.hidden_days,
        "hidden_reason": m.hidden_reason,
        "limits": [{"field": x.field, "op": x.op, "values": list(x.values)} for x in m.limits],
        "consent_required": m.consent_required,
        "explicit_request": m.explicit_request,
    }
