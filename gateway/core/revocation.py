"""Revocations: tokens (by ``jti``), consumers and signing keys that must no longer be accepted.

``RevocationList`` is what the verifier checks on every call, cache hit or not;
the ``RevocationStore`` port keeps revocations durable and shared between
processes (SQLite or memory adapters); a sync task reloads the list when the
store changes, and the process that revokes applies it at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["KINDS", "Revocation", "RevocationList", "RevocationStore"]

Kind = Literal["jti", "consumer", "key"]
KINDS: tuple[Kind, ...] = ("jti", "consumer", "key")


@dataclass(frozen=True, slots=True)
class Revocation:
    kind: str             # "jti" | "consumer" | "key" (a key's kid)
    value: str
    reason: str = ""
    created_us: int = 0
    until_us: int = 0     # 0: until reinstated; a jti's revocation may end when the token would have expired
    by: str = ""          # staff subject who revoked


class RevocationList:
    """The in-memory view; checks are set lookups."""

    def __init__(self, revocations: Iterable[Revocation] = ()) -> None:
        self.jtis: set[str] = set()
        self.consumers: set[str] = set()
        self.keys: set[str] = set()
        self.replace(revocations)

    def replace(self, revocations: Iterable[Revocation]) -> None:
        sets: dict[str, set[str]] = {k: set() for k in KINDS}
        for r in revocations:
            sets[r.kind].add(r.value)
        self.jtis, self.consumers, self.keys = sets["jti"], sets["consumer"], sets["key"]

    def add(self, r: Revocation) -> None:
        {"jti": self.jtis, "consumer": self.consumers, "key": self.keys}[r.kind].add(r.value)

    def discard(self, kind: str, value: str) -> None:
        {"jti": self.jtis, "consumer": self.consumers, "key": self.keys}[kind].discard(value)

    def refusal(self, *, jti: str, consumer: str, kid: str) -> str:
        """A public detail when revoked, else ''."""
        if jti in self.jtis:
            return "The token was revoked"
        if consumer and consumer in self.consumers:
            return "The consumer's access was revoked"
        if kid and kid in self.keys:
            return "The token's signing key was revoked"
        return ""


class RevocationStore(Protocol):
    """Durable revocations, shared by every gateway process on the same store."""

    async def add(self, r: Revocation) -> None: ...

    async def remove(self, kind: str, value: str) -> bool: ...

    async def active(self, now_us: int) -> Sequence[Revocation]: ...

    async def changed(self) -> bool:
        """True when another writer may have changed the store since the last call."""
        ...
