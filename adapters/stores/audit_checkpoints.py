"""Signing checkpoints of the exchange log cheaply, and making inclusion proofs.

``IncrementalTree`` keeps the Merkle frontier of the records it has seen: each
checkpoint reads and checks only the records appended since the previous one,
so signing every few seconds stays cheap on a log of millions of records (the
stores' ``tree_head`` re-hashes the whole log). The first call after start-up
reads the log once. Before anything is signed, the new records' chain is
verified from the last known head: the gateway never signs a broken chain.

Works with any of the three stores (duck-typed ``CheckpointStore``); several
gateway processes may sign into one PostgreSQL log: a checkpoint of a size
another process already signed is simply skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from adapters.keys.file_signer import public_key_pem
from adapters.stores.audit_signing import sign_checkpoint, verify_checkpoint
from gateway.core.audit_chain import Anchor, Row, VerifyResult, canonical_bytes, verify_rows
from gateway.core.audit_proof import InclusionProof, checkpoint_due
from gateway.core.merkle import Checkpoint, frontier_push, frontier_root
from gateway.core.ports import NoteSigner
from gateway.core.signed_note import key_id, vkey

__all__ = ["CheckpointSigner", "CheckpointStore", "IncrementalTree", "TamperedLog", "make_proof"]

log = logging.getLogger("passerelle.audit")


class CheckpointStore(Protocol):
    async def chain_head(self) -> tuple[int, str]: ...
    async def anchor(self) -> Anchor: ...
    def iter_rows(self, batch: int = 10_000, *, after_seq: int = 0) -> Iterator[Row]: ...
    async def add_checkpoint(self, checkpoint: Checkpoint) -> None: ...
    async def checkpoints(self) -> list[Checkpoint]: ...
    async def latest_checkpoint(self) -> Checkpoint | None: ...


class TamperedLog(Exception):
    """The log no longer chains from what was seen before: nothing is signed."""

    def __init__(self, result: VerifyResult) -> None:
        self.result = result
        super().__init__(f"record {result.seq} {result.tamper}: {result.detail}")


@dataclass(frozen=True, slots=True)
class _State:
    seq: int
    hash: str
    frontier: tuple[bytes, ...]


class IncrementalTree:
    """The Merkle frontier of the log up to ``size``, advanced with the records appended since."""

    def __init__(self, store: CheckpointStore) -> None:
        self._store = store
        self._state: _State | None = None
        self._lock = asyncio.Lock()

    @property
    def size(self) -> int:
        return self._state.seq if self._state else 0

    async def advance(self) -> tuple[int, bytes]:
        """Read and check the records appended since the last call; return ``(size, root)``."""
        async with self._lock:
            anchor = await self._store.anchor()
            state = self._state
            if state is None or anchor.seq > state.seq:  # first call, or purged past what we saw
                state = _State(anchor.seq, anchor.hash, anchor.frontier)
            self._state = await asyncio.to_thread(self._extend, state)
            return self._state.seq, frontier_root(self._state.frontier)

    def _extend(self, state: _State) -> _State:
        frontier = list(state.frontier)
        seen: list[str] = []

        def rows() -> Iterator[Row]:
            for row in self._store.iter_rows(after_seq=state.seq):
                seen.append(row[-1])
                yield row

        result = verify_rows(rows(), anchor=Anchor(state.seq, state.hash))
        if not result.ok:
            raise TamperedLog(result)
        for i, digest in enumerate(seen, start=state.seq):
            frontier_push(frontier, i, bytes.fromhex(digest))
        return _State(result.head_seq, result.head_hash, tuple(frontier))


class CheckpointSigner:
    """Signs tree heads as C2SP checkpoints with a ``NoteSigner`` (Ed25519) and stores them.

    The checkpoint's origin is the signer's name. ``public_key`` is the raw 32-byte key,
    ``vkey`` its C2SP verifier key, ``public_key_pem`` its SubjectPublicKeyInfo PEM.
    """

    def __init__(self, store: CheckpointStore, signer: NoteSigner, *, clock_us: Callable[[], int]) -> None:
        self.store = store
        self.tree = IncrementalTree(store)
        self.signer = signer
        self._clock_us = clock_us
        self.origin = signer.name
        self.public_key = signer.public_key
        self.public_key_pem = public_key_pem(signer.public_key)
        self.key_id = key_id(signer.name, signer.public_key).hex()
        self.vkey = vkey(signer.name, signer.public_key)

    def valid(self, cp: Checkpoint) -> bool:
        return cp.origin == self.origin and verify_checkpoint(cp, self.public_key)

    async def checkpoint(self) -> Checkpoint | None:
        """Sign a checkpoint of the log as it is now; ``None`` when it has not grown."""
        size, root = await self.tree.advance()
        latest = await self.store.latest_checkpoint()
        if not checkpoint_due(latest, size):
            return None
        cp = sign_checkpoint(Checkpoint(size, root, self._clock_us()), self.signer)
        try:
            await self.store.add_checkpoint(cp)
        except Exception:  # another replica signed this size first (unique tree_size)
            if any(c.tree_size == size for c in await self.store.checkpoints()):
                return None
            raise
        log.info("audit checkpoint signed", extra={"fields": {"tree_size": size, "root": root.hex()}})
        return cp


async def make_proof(store: Any, seq: int, checkpoint: Checkpoint) -> InclusionProof | None:
    """The inclusion proof of record ``seq`` in ``checkpoint``; ``None`` if the record is not covered."""
    if seq > checkpoint.tree_size:
        return None
    stored = await store.get(seq)
    if stored is None:
        return None
    path = await store.inclusion_proof(seq, checkpoint.tree_size)
    canonical = canonical_bytes(seq, stored.record).decode("ascii")
    return InclusionProof(seq, stored.hash, stored.prev_hash, canonical, tuple(path), checkpoint)
