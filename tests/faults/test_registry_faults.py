"""A registry that is down, slow, flapping or answering garbage: callers get data or a clear
reason, never a hang; every answer has its audit record; the gateway recovers by itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters.registries.resilience import ResilientAdapter
from tests.faults._calls import Seen, assert_every_answer_audited, grpc_person, rest_income
from tests.faults.conftest import FaultStack, fault_stack


async def until_ok(stack: FaultStack, attempts: int = 40) -> list[Seen]:
    """Call every 0.1 s until data comes back (the breaker's probe, the channel's reconnect)."""
    seen: list[Seen] = []
    for i in range(attempts):
        seen.append(await grpc_person(stack, f"probe-{i}"))
        if seen[-1].ok:
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"no recovery after {attempts} calls: {seen[-3:]}")


async def test_registry_down_is_refused_clearly_then_the_circuit_opens_and_recovers(stack: FaultStack) -> None:
    await stack.stop_grpc_registry()
    seen = [await grpc_person(stack, f"down-{i}") for i in range(6)]
    assert {s.reason for s in seen} == {"REGISTRY_UNAVAILABLE"}
    adapter = stack.running.gateway.registries["registry.population.v1.PopulationRegistry"].adapter
    assert isinstance(adapter, ResilientAdapter) and adapter.breaker.state == "open"

    await stack.restart_grpc_registry()
    after = await until_ok(stack)
    after += [await grpc_person(stack, f"back-{i}") for i in range(3)]
    assert all(s.ok for s in after[-3:]), after
    assert_every_answer_audited(seen + after, await stack.records())


async def test_slow_registry_answers_deadline_exceeded_within_the_callers_deadline(stack: FaultStack) -> None:
    stack.faults.delay_s = 5.0
    seen = await asyncio.gather(*(grpc_person(stack, f"slow-{i}", timeout=0.3) for i in range(5)))
    assert {s.reason for s in seen} <= {"REGISTRY_TIMEOUT", "transport:DEADLINE_EXCEEDED"}, seen
    stack.faults.delay_s = 0.0
    assert (await until_ok(stack))[-1].ok
    records = await stack.records()
    assert {r.record.request_id for r in records} >= {s.request_id for s in seen}


async def test_flapping_registry_gives_data_or_unavailable_and_every_answer_is_audited(tmp_path: Path) -> None:
    async with fault_stack(tmp_path, retries=2, breaker_failures=50) as stack:
        stack.faults.fail_rate = 0.5
        seen = await asyncio.gather(*(grpc_person(stack, f"flap-{i}") for i in range(60)))
        assert {s.reason for s in seen} <= {"", "REGISTRY_UNAVAILABLE"}
        assert any(s.ok for s in seen)
        assert_every_answer_audited(list(seen), await stack.records())


async def test_garbage_from_the_rest_registry_is_a_bad_response_not_data(stack: FaultStack) -> None:
    nid = stack.taxpayer()
    await stack.grant_consent(nid)
    stack.tax_faults.garbage = True
    seen = [await rest_income(stack, f"garbage-{i}", nid) for i in range(3)]
    assert {s.reason for s in seen} == {"REGISTRY_BAD_RESPONSE"}
    stack.tax_faults.garbage = False
    await asyncio.sleep(0.35)
    good = await rest_income(stack, "clean", nid)
    assert good.ok
    assert_every_answer_audited([*seen, good], await stack.records())


async def test_a_slow_registry_fills_only_its_own_bulkhead(tmp_path: Path) -> None:
    async with fault_stack(tmp_path, max_concurrency=2, max_queue=2, breaker_failures=100) as stack:
        nid = stack.taxpayer()
        await stack.grant_consent(nid)
        stack.faults.delay_s = 0.6  # two rounds of two fit in the registry's 2 s timeout
        slow = [asyncio.create_task(grpc_person(stack, f"bulk-{i}", timeout=5)) for i in range(10)]
        await asyncio.sleep(0.2)
        other = await rest_income(stack, "other-registry", nid)
        results: list[Seen] = list(await asyncio.gather(*slow))
        assert other.ok, other
        refused = [s for s in results if s.reason == "REGISTRY_UNAVAILABLE"]
        assert len(refused) == 6 and sum(s.ok for s in results) == 4, "\n".join(map(str, results))
        assert_every_answer_audited([*results, other], await stack.records())
