"""Attack review of the bulk hot-path session (d64fe3b..73387b6): regressions of the findings.

(The hand-written bulkhead this was found in is gone: ``_Bulkhead`` is ``asyncio.Semaphore`` again, which
wakes the next waiter itself; the test stays.)

* ``_Bulkhead`` (adapters/registries/resilience.py): a waiter cancelled (its timeout, its client gone)
  in the same loop iteration as the last holder releases, and a newcomer that acquires before the
  cancelled waiter's task has run: the slot is counted free while the newcomer waits in the line, and
  nobody hands it over (the fast path needs an empty line). The newcomer, and every caller behind it,
  waits until its deadline with the registry idle.
"""

from __future__ import annotations

import asyncio

from adapters.registries.resilience import _Bulkhead


async def _newcomer_behind_a_waiter_cancelled_as_the_slot_frees(bulkhead: _Bulkhead) -> asyncio.Task[None]:
    await bulkhead.acquire()                          # H holds the only slot
    waiter = asyncio.create_task(bulkhead.acquire())  # W waits for it
    go = asyncio.Event()

    async def newcomer() -> None:                     # N: ready in the same loop iteration as W's wake-up
        await go.wait()
        await bulkhead.acquire()

    task = asyncio.create_task(newcomer())
    await asyncio.sleep(0)
    go.set()            # N's wake-up is queued first ...
    waiter.cancel()     # ... then W's (its deadline passed, or its client left) ...
    bulkhead.release()  # ... and H is done: W's slot is skipped, the slot counted free
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert waiter.cancelled()
    return task


async def test_a_free_slot_is_handed_to_a_waiter_that_queued_while_a_leaver_was_still_counted() -> None:
    bulkhead = _Bulkhead(1, 10)
    newcomer = await _newcomer_behind_a_waiter_cancelled_as_the_slot_frees(bulkhead)
    await asyncio.wait_for(newcomer, 1.0)   # was: TimeoutError, a slot free and nobody holding it
