"""Bulk look-ups (issue 16 review): regressions of the attacker's findings.

* A batch in index order does not deadlock when the consumer's concurrency is below the window.
* A token revoked or expired mid-batch stops the batch: no record for items not processed.
* Call-level values are checked once, before the stream: no per-item refusal records.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from gateway.core.quotas import Admission, Quota
from tests.security.conftest import SecurityStack
from tests.security.test_bulk import _ids, _slow, bulk_records, headers, last_seq, lookups, rest_bulk

pytestmark = pytest.mark.asyncio(loop_scope="module")

GET_PERSON_SERVICE = "registry.population.v1.PopulationRegistry"


@contextlib.contextmanager
def admission(s: SecurityStack, quota: Quota, share: float = 1.0) -> Iterator[Admission]:
    pipeline = lookups(s).pipeline
    previous = pipeline._admission
    a = Admission(quota)
    if share < 1.0:   # as with --workers: this process's part of the consumer's quota
        a.set_shares(share, {}, 0.0)
    pipeline._admission = a
    try:
        yield a
    finally:
        pipeline._admission = previous


@pytest.mark.parametrize(("max_concurrent", "share"), [(1, 1.0), (4, 1.0), (4, 0.25)])
async def test_index_order_does_not_deadlock_below_the_window(
    stack: SecurityStack, max_concurrent: int, share: float
) -> None:
    original, _slow_registry = await _slow(stack)
    ids = _ids(stack, 40)
    rid = f"bulk-deadlock-{max_concurrent}-{share}"
    start = await last_seq(stack)
    try:
        with admission(stack, Quota(rate_per_s=0.0, burst=1, max_concurrent=max_concurrent)) as a:
            status, items = await asyncio.wait_for(
                rest_bulk(stack, [{"nationalId": n} for n in ids], headers(stack, rid)), timeout=20)
            assert a.in_flight("cedies") == 0
        assert status == 200
        assert [i["index"] for i in items] == list(range(len(ids)))
        assert all(i["status"]["code"] == 0 for i in items), items[:3]
        assert len([r for r in await bulk_records(stack, start, rid)
                    if "subject_role" not in r.record.extra]) == len(ids)
    finally:
        stack.running.gateway.registries[GET_PERSON_SERVICE] = original
