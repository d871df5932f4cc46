"""Signing checkpoints of the exchange log cheaply, and never over a history that contradicts a signature.

``IncrementalTree`` keeps the Merkle frontier of the records it has seen: each
checkpoint reads and checks only the records appended since the previous one,
so signing every few seconds stays cheap on a log of millions of records (the
stores' ``tree_head`` re-hashes the whole log). The first call after start-up
reads the log once. Before anything is signed, the new records' chain is
verified from the last known head: the gateway never signs a broken chain.

A tree rebuilt from the database after a restart is whatever the database holds,
so before signing, ``StoreCheckpointSigner`` checks (RFC 9162 consistency proof) that
the log extends every signed checkpoint it can find that the database
administrator cannot rewrite: its own last signature (``audit_signer_state``,
kept beside the key's configuration), the latest stored checkpoint, and the
configured witnesses' cosigned checkpoints when they answer. Anything else is
``TamperedLog``; a missing signer state once the log has records is
``SignerStateMissing`` until an operator re-anchors (``checkpoint(reanchor=...)``).

Works with any of the three stores (duck-typed ``CheckpointStore``); several
gateway processes may sign into one PostgreSQL log: a checkpoint of a size
another process already signed is simply skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from adapters.keys.file_signer import public_key_pem
from adapters.stores.audit_signer_state import (
    MemorySignerState,
    SignerState,
    SignerStateError,
    SignerStateFile,
    StateRecord,
)
from adapters.stores.audit_signing import sign_checkpoint, verify_checkpoint
from gateway.core.audit_chain import Anchor, Row, VerifyResult, canonical_bytes, verify_rows
from gateway.core.audit_proof import Due, InclusionProof, SigningRefused, checkpoint_due, contradiction
from gateway.core.merkle import EMPTY_ROOT, Checkpoint, frontier_push, frontier_root
from gateway.core.ports import NoteSigner
from gateway.core.signed_note import key_id, vkey
from gateway.core.types import StoredAuditRecord

__all__ = [
    "CheckpointStore", "IncrementalTree", "ProofSource", "SignerStateMissing", "SigningRefused",
    "StoreCheckpointSigner", "TamperedLog", "make_proof", "signer_state_of",
]  # fmt: skip

log = logging.getLogger("passerelle.audit")
#: Checkpoints remembered as already checked against the log (newest first kept).
_CHECKED_KEPT = 256

#: Where witnesses' cosigned checkpoints come from: ``[(witness name, checkpoint)]``, checked already.
WitnessedCheckpoints = Callable[[], Awaitable[list[tuple[str, Checkpoint]]]]


class CheckpointStore(Protocol):
    async def chain_head(self) -> tuple[int, str]: ...
    async def anchor(self) -> Anchor: ...
    def iter_rows(self, batch: int = 10_000, *, after_seq: int = 0) -> Iterator[Row]: ...
    async def add_checkpoint(self, checkpoint: Checkpoint) -> None: ...
    async def checkpoints(self) -> list[Checkpoint]: ...
    async def latest_checkpoint(self) -> Checkpoint | None: ...
    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]: ...


class ProofSource(Protocol):
    """What an inclusion proof reads from the exchange log's store."""

    async def get(self, seq: int) -> StoredAuditRecord | None: ...
    async def inclusion_proof(self, seq: int, tree_size: int) -> list[bytes]: ...


class TamperedLog(SigningRefused):
    """The log no longer chains from, or no longer extends, what was seen or signed before."""

    def __init__(self, result: VerifyResult | None = None, detail: str = "") -> None:
        self.result = result
        super().__init__(detail or (f"record {result.seq} {result.tamper}: {result.detail}" if result else ""))


class SignerStateMissing(SigningRefused):
    """The log has records but the signer has no trustworthy memory of what it signed."""


#: Rows per page when a checkpoint reads the records appended since the previous one (``iter_rows``'
#: ``batch``): ~3 KB of Python objects per SQLite row, so a 10,000-row page is ~30 MB and 256 rows ~0.8 MB,
#: read as fast (~1 s per 60,000 records either way, measured on 2 shared vCPUs).
EXTEND_PAGE_ROWS = 256


@dataclass(frozen=True, slots=True)
class _State:
    seq: int
    hash: str
    frontier: tuple[bytes, ...]


class IncrementalTree:
    """The Merkle frontier of the log up to ``size``, advanced with the records appended since.

    ``generation`` changes whenever the frontier is rebuilt from the store (start-up, a
    purge past it): only then can the tree differ from one that extends what it was.
    """

    def __init__(self, store: CheckpointStore) -> None:
        self._store = store
        self._state: _State | None = None
        self._lock = asyncio.Lock()
        self.generation = 0

    @property
    def size(self) -> int:
        return self._state.seq if self._state else 0

    async def advance(self) -> tuple[int, bytes]:
        """Read and check the records appended since the last call; return ``(size, root)``."""
        async with self._lock:
            anchor = await self._store.anchor()
            state = self._state
            if state is not None:
                await self._still_there(state)
            if state is None or anchor.seq > state.seq:  # first call, or purged past what we saw
                state = _State(anchor.seq, anchor.hash, anchor.frontier)
                self.generation += 1
            self._state = await asyncio.to_thread(self._extend, state)
            return self._state.seq, frontier_root(self._state.frontier)

    async def _still_there(self, state: _State) -> None:
        head, head_hash = await self._store.chain_head()
        if head < state.seq or (head == state.seq and head_hash != state.hash):
            raise TamperedLog(detail=f"the log's head went from record {state.seq} back to {head} "
                                     "while the gateway ran: records were removed or rewritten")  # fmt: skip

    def _extend(self, state: _State) -> _State:
        # Each row's leaf goes into a copy of the frontier as it is read, and rows are read in small
        # pages: what one checkpoint holds at once stays < 1 MB, whatever was appended since the last one.
        # Keeping every new row's hash and reading 10,000-row pages held ~36 MB of Python objects per
        # 60,000 records, freed after each checkpoint but left behind as allocator fragmentation: the
        # gateway's resident set grew at each of these peaks (docs/performance.md, "Memory").
        # A broken chain raises below, so leaves pushed before verify_rows reaches the bad row are never used.
        frontier = list(state.frontier)
        size = state.seq

        def rows() -> Iterator[Row]:
            nonlocal size
            for row in self._store.iter_rows(EXTEND_PAGE_ROWS, after_seq=state.seq):
                frontier_push(frontier, size, bytes.fromhex(row[-1]))
                size += 1
                yield row

        result = verify_rows(rows(), anchor=Anchor(state.seq, state.hash))
        if not result.ok:
            raise TamperedLog(result)
        return _State(result.head_seq, result.head_hash, tuple(frontier))


class StoreCheckpointSigner:
    """Signs tree heads as C2SP checkpoints with a ``NoteSigner`` (Ed25519) and stores them.

    The checkpoint's origin is the signer's name. ``public_key`` is the raw 32-byte key,
    ``vkey`` its C2SP verifier key, ``public_key_pem`` its SubjectPublicKeyInfo PEM.
    ``state`` is the signer's memory outside the database (default: in memory only, for
    tests and tools: a missing memory is then adopted, not refused); ``witnessed`` fetches
    the witnesses' latest cosigned checkpoints.
    """

    def __init__(
        self, store: CheckpointStore, signer: NoteSigner, *, clock_us: Callable[[], int],
        state: SignerState | None = None, witnessed: WitnessedCheckpoints | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.tree = IncrementalTree(store)
        self.signer = signer
        self.state: SignerState = state if state is not None else MemorySignerState()
        self._witnessed = witnessed
        self._clock_us = clock_us
        # Checkpoints this process already knows the log extends (its own, references proven once); only
        # recent ones are ever asked about again: the newest _CHECKED_KEPT are kept (one per minute otherwise).
        self._checked: dict[tuple[int, bytes], None] = {}
        self._generation = -1
        self.origin = signer.name
        self.public_key = signer.public_key
        self.public_key_pem = public_key_pem(signer.public_key)
        self.key_id = key_id(signer.name, signer.public_key).hex()
        self.vkey = vkey(signer.name, signer.public_key)

    def valid(self, cp: Checkpoint) -> bool:
        return cp.origin == self.origin and verify_checkpoint(cp, self.public_key)

    @property
    def _persistent(self) -> bool:
        return not isinstance(self.state, MemorySignerState)

    async def prepare(self) -> None:
        """At start-up: give a new, empty log its first signer state; check the log against every reference.

        Raises ``SigningRefused`` (``TamperedLog``, ``SignerStateMissing``) when the log cannot be signed.
        """
        if self._load_state() is None:
            head, _ = await self.store.chain_head()
            if head > 0 or await self.store.checkpoints():
                raise self._missing()
            self._save(self._sign(0, EMPTY_ROOT))
            log.warning("checkpoint signer state initialised for an empty log",
                        extra={"fields": {"signer_state": self.state.where}})  # fmt: skip
            return
        size, root = await self.tree.advance()
        await self._check_references(size, root)

    async def checkpoint(self, *, reanchor: str = "") -> Checkpoint | None:
        """Sign a checkpoint of the log as it is now; ``None`` when it has not grown.

        ``reanchor`` (the operator's reason) replaces a missing or untrustworthy signer state
        with this checkpoint; it is refused when the state is readable (that is evidence).
        Raises ``SigningRefused``.
        """
        size, root = await self.tree.advance()
        if reanchor:
            self.refuse_reanchor()
        record = self._load_state(reanchoring=bool(reanchor))
        await self._check_references(size, root, record, reanchor=bool(reanchor))
        latest = await self._latest_valid()
        due = checkpoint_due(latest, size, root)
        if due in (Due.SHRUNK, Due.FORKED):  # caught above already; kept so that no path signs it
            raise TamperedLog(detail=f"refusing to sign: the log ({size} records) contradicts its latest "
                                     f"checkpoint ({latest.tree_size if latest else 0}): {due}")  # fmt: skip
        if due is Due.UP_TO_DATE and not reanchor:
            return None
        cp = latest if due is Due.UP_TO_DATE and latest is not None else self._sign(size, root)
        self._save(cp, reanchor=reanchor, previous=record)
        self._remember((cp.tree_size, cp.root_hash))  # our own tree: no proof needed against it
        if cp is latest:
            return cp
        try:
            await self.store.add_checkpoint(cp)
        except Exception:  # another replica signed this size first (unique tree_size)
            if any(c.tree_size == size for c in await self.store.checkpoints()):
                return None
            raise
        log.info("audit checkpoint signed", extra={"fields": {"tree_size": size, "root": root.hex()}})
        return cp

    def _remember(self, checked: tuple[int, bytes]) -> None:
        self._checked[checked] = None
        while len(self._checked) > _CHECKED_KEPT:
            del self._checked[next(iter(self._checked))]   # the oldest: proven again if ever asked about

    def refuse_reanchor(self) -> None:
        """Raise ``SigningRefused`` unless re-anchoring is allowed: only when the state is missing or unreadable."""
        if self._load_state(reanchoring=True) is not None:
            raise SigningRefused(
                f"the signer state {self.state.where} is readable and signed: there is nothing "
                "to re-anchor (a log that contradicts it is evidence, not a lost memory)"
            )

    def _sign(self, size: int, root: bytes) -> Checkpoint:
        return sign_checkpoint(Checkpoint(size, root, self._clock_us()), self.signer)

    def _load_state(self, *, reanchoring: bool = False) -> StateRecord | None:
        try:
            return self.state.load(self.public_key)
        except SignerStateError as exc:
            if reanchoring:
                return None
            raise SignerStateMissing(
                f"{exc}; nothing is signed until an operator re-anchors (`gateway audit checkpoint --reanchor REASON`)"
            ) from None

    def _missing(self) -> SignerStateMissing:
        return SignerStateMissing(
            f"the log has records but the checkpoint signer has no state ({self.state.where}): it cannot "
            "tell this history from a rewritten one. Nothing is signed until an operator re-anchors, on purpose: "
            "`gateway audit checkpoint --reanchor REASON` (recorded for good in the signer state)"
        )

    def _save(self, cp: Checkpoint, *, reanchor: str = "", previous: StateRecord | None = None) -> None:
        reanchors = previous.reanchors if previous is not None else ()
        if reanchor:
            old = self._previous_reanchors()
            reanchors = (*old, {"at_us": self._clock_us(), "tree_size": cp.tree_size, "root": cp.root_hash.hex(),
                                "reason": reanchor})  # fmt: skip
            log.warning("CHECKPOINT SIGNER RE-ANCHORED by an operator: the log's history before it is vouched "
                        "for by no earlier signer state", extra={"fields": reanchors[-1]})  # fmt: skip
        self.state.save(StateRecord(cp, reanchors))

    def _previous_reanchors(self) -> tuple[dict[str, Any], ...]:
        try:
            record = self.state.load(self.public_key)
        except SignerStateError:
            return ()
        return record.reanchors if record is not None else ()

    async def _latest_valid(self) -> Checkpoint | None:
        """The latest stored checkpoint this key signed (rows signed by nothing are ignored, and logged)."""
        latest = await self.store.latest_checkpoint()
        if latest is None or self.valid(latest):
            return latest
        for cp in reversed(await self.store.checkpoints()):
            if self.valid(cp):
                return cp
            log.error("a stored checkpoint is not signed by the log key: ignored",
                      extra={"fields": {"tree_size": cp.tree_size}})  # fmt: skip
        return None

    async def _references(self, record: StateRecord | None) -> list[tuple[str, Checkpoint, bool]]:
        """(what, signed checkpoint, must be checkable) for every checkpoint the log must extend."""
        refs: list[tuple[str, Checkpoint, bool]] = []
        if record is not None:
            refs.append((f"the signer state {self.state.where}", record.checkpoint, True))
        latest = await self._latest_valid()
        if latest is not None:
            refs.append(("the latest checkpoint in the log's database", latest, True))
        if self._witnessed is not None:
            for name, cp in await self._witnessed():
                if cp.origin == self.origin and verify_checkpoint(cp, self.public_key):
                    refs.append((f"witness {name}'s cosigned checkpoint", cp, False))
        return refs

    async def _check_references(
        self, size: int, root: bytes, record: StateRecord | None = None, *, reanchor: bool = False
    ) -> None:  # fmt: skip
        if record is None and not reanchor:
            record = self._load_state()
            if record is None:
                if self._persistent:
                    raise self._missing()
                self.state.save(StateRecord(self._sign(0, EMPTY_ROOT)))  # in memory: adopt what is there
                record = self.state.load(self.public_key)
        if self.tree.generation != self._generation:  # a rebuilt tree must be checked against everything again
            self._checked.clear()
            self._generation = self.tree.generation
        for what, ref, required in await self._references(record):
            if (ref.tree_size, ref.root_hash) in self._checked:
                continue
            proof = await self._proof(ref.tree_size, size)
            if proof is None:
                if required:
                    raise TamperedLog(
                        detail=f"{what} (tree size {ref.tree_size}) lies in the purged prefix of "
                        "the log and cannot be checked: the retention anchor moved past it"
                    )
                log.warning("a witness's checkpoint predates the retention anchor: not checked",
                            extra={"fields": {"from": what, "tree_size": ref.tree_size}})  # fmt: skip
                continue
            problem = contradiction(ref, size, root, proof)
            if problem is not None:
                raise TamperedLog(detail=f"refusing to sign: {problem} (against {what})")
            self._remember((ref.tree_size, ref.root_hash))

    async def _proof(self, old: int, new: int) -> list[bytes] | None:
        if old == 0 or old >= new:
            return []
        try:
            return await self.store.consistency_proof(old, new)
        except ValueError:
            return None


def signer_state_of(config: Any) -> SignerStateFile:
    """The signer state file named by ``[gateway.keys] signer_state`` (see ``KeysSection.signer_state_file``)."""
    return SignerStateFile(config.path(config.gateway.keys.signer_state_file))


async def make_proof(store: ProofSource, seq: int, checkpoint: Checkpoint) -> InclusionProof | None:
    """The inclusion proof of record ``seq`` in ``checkpoint``; ``None`` if the record is not covered."""
    if seq > checkpoint.tree_size:
        return None
    stored = await store.get(seq)
    if stored is None:
        return None
    path = await store.inclusion_proof(seq, checkpoint.tree_size)
    canonical = canonical_bytes(seq, stored.record).decode("ascii")
    return InclusionProof(seq, stored.hash, stored.prev_hash, canonical, tuple(path), checkpoint)
