"""Properties of mandates and consents, over generated data, through the real exchange pipeline (fakes at the edges).

- no answer ever holds a field outside the mandate (nor outside the field mask);
- no consent-based exchange happens without a live consent;
- a revoked or expired consent always refuses;
- a one-exchange consent serves at most once, also under concurrent requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.stores.audit_memory import InMemoryAuditLog
from adapters.stores.consent_memory import InMemoryConsentStore
from consent import Consent, Mandate, Policy, Purpose, allowed_fields, consent_status
from gateway.core.contracts import Operation, load_operations
from gateway.core.errors import GatewayError
from gateway.core.identifiers import make_national_id
from gateway.core.pipeline import CallContext, ExchangePipeline, Registry
from gateway.core.pseudonym import Pseudonymiser
from tests.support import TestIssuer, verifier_for

POP, TAX = "registry.population.v1.PopulationRegistry", "registry.tax.v1.TaxRegistry"
NOW = 1_767_225_600_000_000  # 2026-01-01
NID = make_national_id(date(1990, 1, 1), 1)
PSEUDO = Pseudonymiser(b"p" * 32)
SUBJECT = PSEUDO(NID)
OPS = load_operations([POP, TAX])
PERSON, CERT = OPS[f"{POP}/GetPerson"], OPS[f"{TAX}/GetIncomeCertificate"]
ISSUER = TestIssuer()
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def full_answer(op: Operation) -> Message:
    """An answer with every top-level field set, so that minimisation has everything to remove."""
    msg = op.response_cls()
    for fd in msg.DESCRIPTOR.fields:
        if fd.message_type is not None:
            target = getattr(msg, fd.name)
            if hasattr(target, "add"):
                target.add()
            else:
                target.SetInParent()
        elif fd.enum_type is not None:
            setattr(msg, fd.name, fd.enum_type.values[-1].number)
        elif fd.type == fd.TYPE_STRING:
            value = getattr(msg, fd.name)
            if hasattr(value, "append"):
                value.append("x")
            else:
                setattr(msg, fd.name, "x")
        elif fd.type == fd.TYPE_BOOL:
            setattr(msg, fd.name, True)
        else:
            setattr(msg, fd.name, 7)
    return msg


@dataclass
class CountingRegistry:
    calls: int = 0
    answers: dict[str, Message] = field(
        default_factory=lambda: {"GetPerson": full_answer(PERSON), "GetIncomeCertificate": full_answer(CERT)}
    )

    async def call(
        self, method: str, request: Message, *, timeout: float, metadata: Sequence[tuple[str, str]]
    ) -> Message:
        self.calls += 1
        await asyncio.sleep(0)  # let concurrent exchanges interleave here
        answer = type(self.answers[method])()
        answer.CopyFrom(self.answers[method])
        return answer

    async def close(self) -> None:
        return None


class Quiet:
    def record(self, reason: str, protocol: str, detail: str = "") -> None:
        return None

    def on_exchange(self, *args: object) -> None:
        return None


class InterleavingStore(InMemoryConsentStore):
    """Yields to the loop after reading, as a real database would: every concurrent exchange sees the unspent
    consent, so only the store's atomic ``spend`` stands between them and a second use."""

    async def for_subject(self, subject: str, consumer: str, purpose: str) -> Sequence[Consent]:
        found = await super().for_subject(subject, consumer, purpose)
        await asyncio.sleep(0)
        return found


def pipeline(mandates: list[Mandate], consents: InMemoryConsentStore, registry: CountingRegistry) -> ExchangePipeline:
    policy = Policy.of([Purpose("student-aid", {"fr": "", "de": "", "en": ""}, {})], mandates)
    return ExchangePipeline(
        verifier=verifier_for([ISSUER], {(ISSUER.id, "cedies"): "cedies"}),
        policy=lambda: policy,
        consents=consents,
        registries={POP: Registry("rnpp", registry, 1.0), TAX: Registry("acd", registry, 1.0)},
        audit=InMemoryAuditLog(),
        pseudonymise=PSEUDO,
        security=Quiet(),
        observer=Quiet(),
        clock_us=lambda: NOW,
    )


def ctx(**kw: object) -> CallContext:
    return CallContext(protocol="grpc", token=ISSUER.token("cedies"), purpose="student-aid", **kw)  # type: ignore[arg-type]


def request(op: Operation) -> Message:
    return op.request_cls(national_id=NID, fiscal_year=2024) if op is CERT else op.request_cls(national_id=NID)


async def exchange(p: ExchangePipeline, op: Operation, **kw: object) -> Message | GatewayError:
    try:
        return await p.exchange(op, request(op), ctx(**kw))
    except GatewayError as exc:
        return exc


# --- strategies ----------------------------------------------------------------------------------------------

operations = st.sampled_from([PERSON, CERT])


@st.composite
def mandate_for(draw: st.DrawFn, op: Operation, basis: str | None = None) -> Mandate:
    names = sorted(op.field_categories)
    cats = sorted({c for c in op.field_categories.values() if c})
    return Mandate(
        "m",
        "cedies",
        op.full_name,
        frozenset({"student-aid"}),
        basis or draw(st.sampled_from(["A6-1-a", "A6-1-c", "A6-1-e"])),
        fields=frozenset(draw(st.lists(st.sampled_from(names), max_size=len(names)))),
        categories=frozenset(draw(st.lists(st.sampled_from(cats), max_size=len(cats)))),
    )


times = st.sampled_from([0, NOW - 10, NOW, NOW + 10])


@st.composite
def consents(draw: st.DrawFn) -> Consent:
    return Consent(
        id=f"c{draw(st.integers(0, 10**9))}",
        subject=draw(st.sampled_from([SUBJECT, "someone-else"])),
        consumer=draw(st.sampled_from(["cedies", "other"])),
        purpose=draw(st.sampled_from(["student-aid", "other"])),
        categories=frozenset(draw(st.lists(st.sampled_from(["INCOME", "TAX_STATUS", "NAME", "ADDRESS"]), max_size=3))),
        granted_us=draw(st.sampled_from([1, NOW - 100])),
        expires_us=draw(times),
        revoked_us=draw(times),
        used_us=draw(st.sampled_from([0, NOW - 5])),
        single_use=draw(st.booleans()),
    )


def unique(cs: list[Consent]) -> list[Consent]:
    return list({c.id: c for c in cs}.values())


def live_for(c: Consent, needed: frozenset[str]) -> bool:
    """The property's own statement of "live": independent of check_consent's code."""
    return (
        (c.subject, c.consumer, c.purpose) == (SUBJECT, "cedies", "student-aid")
        and consent_status(c, NOW) == "ACTIVE"
        and (not c.categories or needed <= c.categories)
    )


# --- properties ----------------------------------------------------------------------------------------------


@PROPS
@given(
    data=st.data(),
    op=operations,
    mask=st.lists(
        st.sampled_from(sorted({f.json_name for f in PERSON.response_fields} | {f.name for f in CERT.response_fields})),
        max_size=4,
    ),
)
def test_no_answer_holds_a_field_outside_the_mandate_or_the_mask(
    data: st.DataObject, op: Operation, mask: list[str]
) -> None:
    mandate = data.draw(mandate_for(op, basis="A6-1-e"))
    mask = [m for m in mask if m in {f.json_name for f in op.response_fields} | set(op.field_categories)]
    result = asyncio.run(
        exchange(pipeline([mandate], InMemoryConsentStore(), CountingRegistry()), op, field_mask=tuple(mask))
    )
    assert not isinstance(result, GatewayError), result
    returned = {f.name for f, _ in result.ListFields()}
    assert returned <= allowed_fields(mandate, op.field_categories)
    if mask:
        by_json = {f.json_name: f.name for f in op.response_fields}
        assert returned <= {by_json.get(m, m) for m in mask}


@PROPS
@given(data=st.data(), cs=st.lists(consents(), max_size=5))
def test_no_consent_based_exchange_happens_without_a_live_consent(data: st.DataObject, cs: list[Consent]) -> None:
    cs = unique(cs)
    mandate = data.draw(mandate_for(CERT, basis="A6-1-a"))
    registry = CountingRegistry()
    result = asyncio.run(exchange(pipeline([mandate], InMemoryConsentStore(cs), registry), CERT))
    wanted = allowed_fields(mandate, CERT.field_categories)
    needed = frozenset(CERT.field_categories[f] for f in wanted if CERT.field_categories[f])
    if not isinstance(result, GatewayError):
        assert any(live_for(c, needed) for c in cs)
    else:
        assert registry.calls == 0
        assert not any(live_for(c, needed) for c in cs) or result.reason == "CONSENT_SPENT"


@PROPS
@given(cs=st.lists(consents(), min_size=1, max_size=5))
def test_revoked_or_expired_consents_always_refuse(cs: list[Consent]) -> None:
    dead = [c for c in unique(cs) if consent_status(c, NOW) in ("REVOKED", "EXPIRED")]
    mandate = Mandate(
        "m", "cedies", CERT.full_name, frozenset({"student-aid"}), "A6-1-a", categories=frozenset({"INCOME"})
    )
    registry = CountingRegistry()
    result = asyncio.run(exchange(pipeline([mandate], InMemoryConsentStore(dead), registry), CERT))
    assert isinstance(result, GatewayError) and registry.calls == 0
    mine = [c for c in dead if (c.subject, c.consumer, c.purpose) == (SUBJECT, "cedies", "student-aid")]
    if mine:
        assert result.reason in ("CONSENT_REVOKED", "CONSENT_EXPIRED", "CONSENT_MISMATCH")


@settings(max_examples=40, deadline=None)
@given(concurrent=st.integers(2, 24), others=st.lists(consents(), max_size=3))
def test_a_one_exchange_consent_serves_at_most_once_under_concurrency(concurrent: int, others: list[Consent]) -> None:
    others = [c for c in unique(others) if c.id != "once" and not live_for(c, frozenset({"INCOME"}))]
    once = Consent("once", SUBJECT, "cedies", "student-aid", granted_us=NOW - 1, single_use=True)
    mandate = Mandate(
        "m", "cedies", CERT.full_name, frozenset({"student-aid"}), "A6-1-a", categories=frozenset({"INCOME"})
    )
    registry = CountingRegistry()
    p = pipeline([mandate], InterleavingStore([once, *others]), registry)

    async def burst() -> list[Message | GatewayError]:
        return await asyncio.gather(*(exchange(p, CERT) for _ in range(concurrent)))

    results = asyncio.run(burst())
    assert sum(not isinstance(r, GatewayError) for r in results) == 1
    assert registry.calls == 1
