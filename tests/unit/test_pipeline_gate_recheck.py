"""A bulk item waits at its gate (``before_record``) between its decision and its record, for as long as
the client reads the groups before it: a mandate changed (admin API) or a consent revoked meanwhile
holds for it as for a single call made at that moment: refused, or cut to the narrower mandate."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from consent import Consent, Mandate, Policy, Purpose
from gateway.core.errors import GatewayError, Reason
from gateway.core.ports import AuditQuery
from gateway.core.types import Outcome
from tests.unit.test_pipeline import NOW_US, POP, Stack, cert_request, person_request, stack, valid_nid

__all__ = ["stack"]   # the fixture, from test_pipeline

PURPOSES = [Purpose("student-aid", {"fr": "", "de": "", "en": ""}, {})]


def _policy(*mandates: Mandate) -> Policy:
    return Policy.of(PURPOSES, list(mandates))


def _person_mandate(fields: frozenset[str]) -> Mandate:
    return Mandate("m1", "cedies", f"{POP}/GetPerson", frozenset({"student-aid"}), "A6-1-e", fields=fields)


async def _records(s: Stack) -> list[tuple[Outcome, str, tuple[str, ...]]]:
    stored = await s.audit.query(AuditQuery(limit=100))
    return [(r.record.outcome, r.record.reason, r.record.fields) for r in stored]


def _meanwhile(change: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def wait_at_gate() -> None:
        change()
    return wait_at_gate


async def test_a_mandate_removed_while_an_item_waits_refuses_it(stack: Stack) -> None:
    op, req = person_request(stack)
    principal = stack.pipeline.authenticate(stack.ctx())

    def remove() -> None:
        policy = _policy()
        stack.pipeline.policy = lambda: policy

    with pytest.raises(GatewayError) as raised:
        await stack.pipeline.exchange_as(principal, op, req, stack.ctx(bulk=True), before_record=_meanwhile(remove))
    assert raised.value.reason == Reason.NO_MANDATE
    assert await _records(stack) == [(Outcome.REFUSED, "NO_MANDATE", ())]


async def test_a_mandate_narrowed_while_an_item_waits_cuts_its_answer(stack: Stack) -> None:
    op, req = person_request(stack)
    principal = stack.pipeline.authenticate(stack.ctx())

    def narrow() -> None:
        policy = _policy(_person_mandate(frozenset({"given_names"})))
        stack.pipeline.policy = lambda: policy

    answer = await stack.pipeline.exchange_as(principal, op, req, stack.ctx(bulk=True),
                                              before_record=_meanwhile(narrow))
    assert {f.name for f, _ in answer.ListFields()} == {"given_names"}
    assert await _records(stack) == [(Outcome.OK, "", ("given_names",))]


async def test_an_unchanged_mandate_answers_as_decided(stack: Stack) -> None:
    op, req = person_request(stack)
    principal = stack.pipeline.authenticate(stack.ctx())
    answer = await stack.pipeline.exchange_as(principal, op, req, stack.ctx(bulk=True),
                                              before_record=_meanwhile(lambda: None))
    assert {f.name for f, _ in answer.ListFields()} == {"given_names", "family_name"}


async def test_a_consent_revoked_while_an_item_waits_refuses_it(stack: Stack) -> None:
    subject = stack.pseudo(valid_nid())
    await stack.consents.add(Consent("c1", subject, "cedies", "student-aid", granted_us=1))
    op, req = cert_request(stack)
    principal = stack.pipeline.authenticate(stack.ctx())
    revoked: list[bool] = []

    async def revoke_at_gate() -> None:
        revoked.append(await stack.consents.revoke("c1", subject, NOW_US - 1))

    with pytest.raises(GatewayError) as raised:
        await stack.pipeline.exchange_as(principal, op, req, stack.ctx(bulk=True), before_record=revoke_at_gate)
    assert raised.value.reason == Reason.CONSENT_REVOKED
    assert [(o, r) for o, r, _ in await _records(stack)] == [(Outcome.REFUSED, "CONSENT_REVOKED")]


async def test_a_single_use_consent_spent_by_the_item_itself_still_answers(stack: Stack) -> None:
    subject = stack.pseudo(valid_nid())
    await stack.consents.add(Consent("c1", subject, "cedies", "student-aid", granted_us=1, single_use=True))
    op, req = cert_request(stack)
    principal = stack.pipeline.authenticate(stack.ctx())
    answer = await stack.pipeline.exchange_as(principal, op, req, stack.ctx(bulk=True),
                                              before_record=_meanwhile(lambda: None))
    assert {f.name for f, _ in answer.ListFields()} == {"fiscal_year", "tax_class"}
