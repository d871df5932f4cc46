"""Plain data: purposes, mandates and consents."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CONSENT_BASES", "LEGAL_BASES", "LIMIT_OPS", "Consent", "Limit", "Mandate", "Purpose"]

#: GDPR legal bases, with DPV-style identifiers (https://w3id.org/dpv/legal/eu/gdpr#).
LEGAL_BASES: dict[str, str] = {
    "A6-1-a": "GDPR Art. 6(1)(a) - consent",
    "A6-1-b": "GDPR Art. 6(1)(b) - contract",
    "A6-1-c": "GDPR Art. 6(1)(c) - legal obligation",
    "A6-1-d": "GDPR Art. 6(1)(d) - vital interests",
    "A6-1-e": "GDPR Art. 6(1)(e) - public task",
    "A6-1-f": "GDPR Art. 6(1)(f) - legitimate interests",
    "A9-2-a": "GDPR Art. 9(2)(a) - explicit consent (special categories)",
    "A9-2-b": "GDPR Art. 9(2)(b) - employment and social security law",
    "A9-2-g": "GDPR Art. 9(2)(g) - substantial public interest",
    "A9-2-h": "GDPR Art. 9(2)(h) - health or social care",
}

#: Legal bases under which the data subject's consent must be live for each exchange.
CONSENT_BASES = frozenset({"A6-1-a", "A9-2-a"})


@dataclass(frozen=True, slots=True)
class Purpose:
    code: str
    title: dict[str, str]  # language -> text (fr, de, en)
    description: dict[str, str]
    legal_reference: str = ""
    legal_url: str = ""
    retention_days: int = 0  # how long the consumer may keep the data


#: Operators of mandate limits, evaluated on a request field named by the contract.
LIMIT_OPS: dict[str, str] = {
    "eq": "must equal",
    "in": "must be one of",
    "not_in": "must not be one of",
    "min": "must be at least",
    "max": "must be at most",
    "year_offset": "must be a year in the window, relative to the current year",
}


@dataclass(frozen=True, slots=True)
class Limit:
    """A condition on one request field, e.g. ``fiscal_year year_offset -1 0`` (last or current year).

    ``values`` are strings; ``min``/``max``/``year_offset`` compare them as integers.
    ``year_offset`` takes two offsets (lowest, highest) from the year of ``now``.
    """

    field: str
    op: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Mandate:
    """Permission for one consumer to use one operation for some purposes.

    ``fields`` and ``categories`` are unioned: a field is allowed if it is named
    or if its contract category is named. Both empty allows nothing.
    """

    id: str
    consumer: str
    service: str  # "registry.population.v1.PopulationRegistry/GetPerson"
    purposes: frozenset[str]
    legal_basis: str
    legal_reference: str = ""
    fields: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    valid_from_us: int = 0
    valid_until_us: int = 0  # 0 = open-ended
    hidden_days: int = 0  # embargo of the citizen's view of these exchanges
    hidden_reason: str = ""
    limits: tuple[Limit, ...] = ()  # all must hold for a request to fall under the mandate
    consent_required: bool = False  # "only subjects that consented", whatever the legal basis
    explicit_request: bool = False  # each lookup needs the subject's explicit request for its procedure

    @property
    def needs_consent(self) -> bool:
        """A live consent (or explicit request) of the data subject must back each lookup."""
        return self.legal_basis in CONSENT_BASES or self.consent_required or self.explicit_request


@dataclass(frozen=True, slots=True)
class Consent:
    """A data subject's consent for one consumer and purpose (ISO/IEC TS 27560 core fields)."""

    id: str
    subject: str  # keyed pseudonym of the subject's identifier
    consumer: str
    purpose: str
    categories: frozenset[str] = frozenset()  # empty: what the mandate covers
    granted_us: int = 0
    expires_us: int = 0  # 0 = no expiry
    single_use: bool = False
    revoked_us: int = 0
    used_us: int = 0  # first use (single-use consents are spent by it)
    extra: dict[str, str] = field(default_factory=dict)
    #: Set for an explicit request (EU OOTS): it authorises only lookups of this procedure (x-case-id).
    procedure_id: str = ""
