"""A read cache in front of a consent store: bounded, short-lived, invalidated by every local change.

Look-ups for one (subject, consumer, purpose) are kept at most ``ttl_s``. A grant,
revocation or spending made through this object drops the entry at once, so the
instance that took a change never serves a stale answer. Another instance sharing
the store sees the change when its entry expires: the worst-case staleness across
instances is ``ttl_s`` (0.5 s by default; see docs/consent.md). Spending a
one-exchange consent is never answered from the cache: it is an atomic write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from cachetools import TTLCache

from consent.model import Consent

__all__ = ["CachedConsentStore", "FullConsentStore"]

_Key = tuple[str, str, str]


class FullConsentStore(Protocol):
    """What the citizen API needs beyond the pipeline's ``ConsentStore`` port."""

    async def for_subject(self, subject: str, consumer: str, purpose: str) -> Sequence[Consent]: ...
    async def of_subject(self, subject: str) -> Sequence[Consent]: ...
    async def get(self, consent_id: str) -> Consent | None: ...
    async def add(self, c: Consent) -> None: ...
    async def revoke(self, consent_id: str, subject: str, now_us: int) -> bool: ...
    async def spend(self, consent_id: str, now_us: int) -> bool: ...
    async def close(self) -> None: ...


class CachedConsentStore:
    def __init__(
        self,
        inner: FullConsentStore,
        *,
        ttl_s: float = 0.5,
        maxsize: int = 10_000,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.ttl_s = ttl_s
        self._cache: TTLCache[_Key, Sequence[Consent]] = TTLCache(maxsize=maxsize, ttl=ttl_s, timer=timer)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe
        self.hits = 0
        self.misses = 0

    async def for_subject(self, subject: str, consumer: str, purpose: str) -> Sequence[Consent]:
        key = (subject, consumer, purpose)
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        fresh = tuple(await self.inner.for_subject(subject, consumer, purpose))
        with self._lock:
            self._cache[key] = fresh
        return fresh

    def invalidate(self, c: Consent) -> None:
        with self._lock:
            self._cache.pop((c.subject, c.consumer, c.purpose), None)

    async def _invalidate_id(self, consent_id: str) -> None:
        c = await self.inner.get(consent_id)
        if c is not None:
            self.invalidate(c)

    async def of_subject(self, subject: str) -> Sequence[Consent]:
        return await self.inner.of_subject(subject)

    async def get(self, consent_id: str) -> Consent | None:
        return await self.inner.get(consent_id)

    async def add(self, c: Consent) -> None:
        await self.inner.add(c)
        self.invalidate(c)

    async def revoke(self, consent_id: str, subject: str, now_us: int) -> bool:
        done = await self.inner.revoke(consent_id, subject, now_us)
        await self._invalidate_id(consent_id)
        return done

    async def spend(self, consent_id: str, now_us: int) -> bool:
        done = await self.inner.spend(consent_id, now_us)
        await self._invalidate_id(consent_id)
        return done

    async def close(self) -> None:
        await self.inner.close()
