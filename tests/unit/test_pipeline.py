"""The exchange pipeline with fakes: no sockets, no disk."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from google.protobuf.message import Message

from adapters.stores.audit_memory import InMemoryAuditLog
from adapters.stores.consent_memory import InMemoryConsentStore
from consent import Consent, Mandate, Policy, Purpose
from gateway._pb.registry.population.v1 import population_pb2
from gateway.core.contracts import Operation, load_operations
from gateway.core.errors import GatewayError, Reason
from gateway.core.pipeline import CallContext, ExchangePipeline, Registry
from gateway.core.ports import AuditQuery
from gateway.core.pseudonym import Pseudonymiser
from gateway.core.types import Outcome
from tests.support import TestIssuer, verifier_for

POP = "registry.population.v1.PopulationRegistry"
TAX = "registry.tax.v1.TaxRegistry"
NOW_US = 1_767_225_600_000_000  # 2026-01-01


def valid_nid() -> str:
    from datetime import date

    from gateway.core.identifiers import make_national_id

    return make_national_id(date(1990, 1, 1), 1)


@dataclass
class FakeRegistry:
    answers: dict[str, Message] = field(default_factory=dict)
    error: Reason | None = None
    crash: Exception | None = None     # an unexpected failure below the pipeline, not a gateway error
    delay: float = 0.0
    calls: list[tuple[str, Message, float]] = field(default_factory=list)

    async def call(
        self, method: str, request: Message, *, timeout: float, metadata: Sequence[tuple[str, str]]
    ) -> Message:
        self.calls.append((method, request, timeout))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error:
            raise GatewayError(self.error)
        if self.crash:
            raise self.crash
        answer = type(self.answers[method])()
        answer.CopyFrom(self.answers[method])
        return answer

    async def close(self) -> None:
        return None


class NullEvents:
    def __init__(self) -> None:
        self.events: list[str] = []

    def record(self, reason: str, protocol: str, detail: str = "") -> None:
        self.events.append(str(reason))

    def on_exchange(self, record: object, provider: str, timing: object) -> None:
        return None


@dataclass
class Stack:
    pipeline: ExchangePipeline
    issuer: TestIssuer
    audit: InMemoryAuditLog
    consents: InMemoryConsentStore
    registry: FakeRegistry
    events: NullEvents
    ops: dict[str, Operation]
    pseudo: Pseudonymiser

    def ctx(self, consumer: str = "cedies", **kw: Any) -> CallContext:
        return replace(CallContext(protocol="grpc", token=self.issuer.token(consumer), purpose="student-aid"), **kw)


@pytest.fixture
def stack() -> Stack:
    ops = load_operations([POP, TAX])
    person = population_pb2.Person(national_id=valid_nid(), given_names="Anne", family_name="Weber", birth_place="Esch")
    person.nationalities.append("LUX")
    cert_op = ops[f"{TAX}/GetIncomeCertificate"]
    cert = cert_op.response_cls(national_id=valid_nid(), fiscal_year=2024, tax_class=2)
    registry = FakeRegistry({"GetPerson": person, "GetIncomeCertificate": cert})
    purposes = [Purpose("student-aid", {"fr": "", "de": "", "en": ""}, {})]
    mandates = [
        Mandate(
            "m1",
            "cedies",
            f"{POP}/GetPerson",
            frozenset({"student-aid"}),
            "A6-1-e",
            fields=frozenset({"given_names", "family_name"}),
        ),
        Mandate(
            "m2",
            "cedies",
            f"{TAX}/GetIncomeCertificate",
            frozenset({"student-aid"}),
            "A6-1-a",
            categories=frozenset({"TAX_STATUS", "INCOME"}),
        ),
    ]
    policy = Policy.of(purposes, mandates)
    issuer = TestIssuer()
    verifier = verifier_for([issuer], {(issuer.id, "cedies"): "cedies", (issuer.id, "sandbox"): "sandbox"})
    audit, consents, events = InMemoryAuditLog(), InMemoryConsentStore(), NullEvents()
    pseudo = Pseudonymiser(b"k" * 32)
    pipeline = ExchangePipeline(
        verifier=verifier,
        policy=lambda: policy,
        consents=consents,
        registries={POP: Registry("rnpp", registry, 1.0), TAX: Registry("acd", registry, 1.0)},
        audit=audit,
        pseudonymise=pseudo,
        security=events,
        observer=events,
        clock_us=lambda: NOW_US,
    )
    return Stack(pipeline, issuer, audit, consents, registry, events, ops, pseudo)


def person_request(stack: Stack, nid: str | None = None) -> tuple[Operation, Message]:
    op = stack.ops[f"{POP}/GetPerson"]
    return op, op.request_cls(national_id=nid or valid_nid())


def cert_request(stack: Stack) -> tuple[Operation, Message]:
    op = stack.ops[f"{TAX}/GetIncomeCertificate"]
    return op, op.request_cls(national_id=valid_nid(), fiscal_year=2024)


async def test_allowed_lookup_returns_only_mandated_fields(stack: Stack) -> None:
    op, req = person_request(stack)
    answer = await stack.pipeline.exchange(op, req, stack.ctx())
    assert {f.name for f, _ in answer.ListFields()} == {"given_names", "family_name"}


async def test_allowed_lookup_is_audited_with_pseudonymised_subject(stack: Stack) -> None:
    op, req = person_request(stack)
    await stack.pipeline.exchange(op, req, stack.ctx(case_id="case-1"))
    (row,) = await stack.audit.query(AuditQuery())
    rec = row.record
    assert (rec.outcome, rec.consumer, rec.fields, rec.case_id) == (
        Outcome.OK,
        "cedies",
        ("given_names", "family_name"),
        "case-1",
    )
    assert rec.subject == stack.pseudo(valid_nid()) and valid_nid() not in rec.subject


async def test_field_mask_narrows_but_never_widens(stack: Stack) -> None:
    op, req = person_request(stack)
    answer = await stack.pipeline.exchange(op, req, stack.ctx(field_mask=("givenNames", "birthPlace")))
    assert [f.name for f, _ in answer.ListFields()] == ["given_names"]


@pytest.mark.parametrize(
    ("ctx_kw", "reason"),
    [
        ({"purpose": ""}, Reason.PURPOSE_MISSING),
        ({"purpose": "curiosity"}, Reason.UNKNOWN_PURPOSE),
        ({"consumer": "sandbox"}, Reason.NO_MANDATE),
        ({"field_mask": ("shoeSize",)}, Reason.INVALID_ARGUMENT),
    ],
)
async def test_refusals_are_audited_and_never_reach_the_registry(
    stack: Stack, ctx_kw: dict[str, Any], reason: Reason
) -> None:
    op, req = person_request(stack)
    with pytest.raises(GatewayError) as exc:
        await stack.pipeline.exchange(op, req, stack.ctx(**ctx_kw))
    assert exc.value.reason == reason
    assert stack.registry.calls == []
    (row,) = await stack.audit.query(AuditQuery())
    assert (row.record.outcome, row.record.reason, row.record.fields) == (Outcome.REFUSED, str(reason), ())


@pytest.mark.parametrize("bad", ["123", "1990010100100", "19901301001" + "00", "abcdefghijklm"])
async def test_malformed_national_id_is_refused_before_any_registry_call(stack: Stack, bad: str) -> None:
    op, req = person_request(stack, bad)
    with pytest.raises(GatewayError) as exc:
        await stack.pipeline.exchange(op, req, stack.ctx())
    assert (exc.value.reason, exc.value.field) == (Reason.INVALID_ARGUMENT, "national_id")
    assert stack.registry.calls == []


async def test_missing_token_is_a_security_event_not_an_exchange(stack: Stack) -> None:
    op, req = person_request(stack)
    with pytest.raises(GatewayError) as exc:
        await stack.pipeline.exchange(op, req, stack.ctx(token=None))
    assert exc.value.reason == Reason.TOKEN_MISSING
    assert stack.events.events == ["TOKEN_MISSING"] and stack.audit.rows == []


async def test_consent_basis_requires_a_live_consent(stack: Stack) -> None:
    op, req = cert_request(stack)
    with pytest.raises(GatewayError) as exc:
        await stack.pipeline.exchange(op, req, stack.ctx())
    assert exc.value.reason == Reason.CONSENT_REQUIRED and stack.registry.calls == []


async def test_consent_allows_then_revocation_refuses(stack: Stack) -> None:
    subject = stack.pseudo(valid_nid())
    await stack.consents.add(Consent("c1", subject, "cedies", "student-aid", granted_us=1))
    op, req = cert_request(stack)
    answer = await stack.pipeline.exchange(op, req, stack.ctx())
    assert {f.name for f, _ in answer.ListFields()} == {"fiscal_year", "tax_class"}
    await stack.consents.revoke("c1", subject, NOW_US - 1)
    with pytest.raises(GatewayError) as exc:
        await stack.pipeline.exchange(op, req, stack.ctx())
    assert exc.value.reason == Reason.CONSENT_REVOKED


async def test_single_use_consent_serves_once_under_concurrency(stack: Stack) -> None:
    subject = stack.pseudo(valid_nid())
    await stack.consents.add(Consent("c1", subject, "cedies", "student-aid", granted_us=1, single_use=True))
    op, req = cert_request(stack)
    results = await asyncio.gather(
        *(stack.pipeline.exchange(op, req, stack.ctx()) for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1


@pytest.mark.parametrize(
    "reason", [Reason.REGISTRY_UNAVAILABLE, Reason.SUBJECT_NOT_FOUND, Reason.REGISTRY_BAD_RESPONSE]
)
async def test_registry_failures_are_audited_as_errors(stack: Stack, reason: Reason) -> None:
    stack.registry.error = reason
    op, req = person_request(stack)
    with pytest.raises(GatewayError) as exc:
        await stack.pipeline.exchange(op, req, stack.ctx())
    assert exc.value.reason == reason
    (row,) = await stack.audit.query(AuditQuery())
    assert (row.record.outcome, row.record.reason) == (Outcome.ERROR, str(reason))


async def test_an_unexpected_adapter_failure_is_still_audited_as_internal(stack: Stack) -> None:
    """A bug below the pipeline does not make an exchange vanish from the log."""
    stack.registry.crash = RuntimeError("socket exploded: 1991062434054")
    op, req = person_request(stack)
    with pytest.raises(RuntimeError):
        await stack.pipeline.exchange(op, req, stack.ctx())
    (row,) = await stack.audit.query(AuditQuery())
    assert (row.record.outcome, row.record.reason, row.record.fields) == (Outcome.ERROR, "INTERNAL", ())


async def test_caller_deadline_bounds_the_registry_call(stack: Stack) -> None:
    op, req = person_request(stack)
    await stack.pipeline.exchange(op, req, stack.ctx(timeout_s=0.2))
    (_, _, timeout) = stack.registry.calls[-1]
    assert timeout <= 0.2


async def test_no_data_leaves_when_the_audit_record_cannot_be_written(stack: Stack) -> None:
    stack.audit.broken = True
    op, req = person_request(stack)
    with pytest.raises(GatewayError) as exc:
        await stack.pipeline.exchange(op, req, stack.ctx())
    assert exc.value.reason == Reason.AUDIT_UNAVAILABLE
