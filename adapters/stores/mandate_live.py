"""The live policy: configured purposes and mandates, overridden by run-time changes from the store.

``current()`` is what ``ExchangePipeline.policy`` calls: it returns an immutable
``Policy`` snapshot, rebuilt at once after a change made here and, for changes
made by another instance sharing the store, after at most ``poll_s`` (one read
of the store's generation counter per poll). ``LivePolicy`` implements the
``LiveMandates`` port (``gateway.core.ports``) that the mandate admin feature uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from adapters.stores.mandate_memory import MandateOverride
from consent import Mandate, Policy, Purpose, mandate_from_dict, mandate_to_dict
from gateway.core.types import MandateEntry

__all__ = ["LivePolicy", "MandateEntry", "MandateStore"]

_log = logging.getLogger("passerelle.mandates")


class MandateStore(Protocol):
    async def generation(self) -> int: ...
    async def overrides(self) -> tuple[int, Sequence[MandateOverride]]: ...
    async def put(self, mandate_id: str, doc: dict[str, Any] | None, updated_us: int, updated_by: str) -> int: ...
    async def close(self) -> None: ...


class LivePolicy:
    def __init__(
        self, purposes: Iterable[Purpose], configured: Iterable[Mandate], store: MandateStore, *, poll_s: float = 0.25
    ) -> None:
        self._purposes = tuple(purposes)
        self._configured = {m.id: m for m in configured}
        self._store = store
        self.poll_s = poll_s
        self._gen = -1
        self._entries: dict[str, MandateEntry] = {}
        self._policy = Policy.of(self._purposes, self._configured.values())
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def current(self) -> Policy:
        return self._policy

    def entries(self) -> list[MandateEntry]:
        return sorted(self._entries.values(), key=lambda e: e.mandate.id)

    def entry(self, mandate_id: str) -> MandateEntry | None:
        return self._entries.get(mandate_id)

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._poll(), name="mandate-poll")

    async def reload(self) -> None:
        gen, overrides = await self._store.overrides()
        entries = {i: MandateEntry(m, "config") for i, m in self._configured.items()}
        for o in overrides:
            if o.doc is None:
                entries.pop(o.id, None)
            else:
                entries[o.id] = MandateEntry(mandate_from_dict(o.doc), "admin", o.updated_us, o.updated_by)
        self._entries = entries
        self._policy = Policy.of(self._purposes, (e.mandate for e in entries.values()))
        self._gen = gen

    async def refresh(self) -> bool:
        """Reload if another instance changed the store; True if it did."""
        if await self._store.generation() == self._gen:
            return False
        async with self._lock:
            await self.reload()
        return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.refresh()
            except Exception:  # keep serving the last good snapshot; the next poll retries
                _log.exception("mandate refresh failed")

    async def put(self, mandate: Mandate, *, by: str, now_us: int) -> MandateEntry:
        async with self._lock:
            await self._store.put(mandate.id, mandate_to_dict(mandate), now_us, by)
            await self.reload()
        return self._entries[mandate.id]

    async def delete(self, mandate_id: str, *, by: str, now_us: int) -> MandateEntry | None:
        async with self._lock:
            gone = self._entries.get(mandate_id)
            if gone is None:
                return None
            await self._store.put(mandate_id, None, now_us, by)
            await self.reload()
        return gone

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._store.close()
