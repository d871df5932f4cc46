"""The checkpoint signer's own memory, kept where the log's database administrator cannot write.

A signer that rebuilds its tree from the database after a restart would sign
whatever history the database holds then, rewritten or not. So the signer keeps
the last checkpoint it signed (a C2SP signed note, signed by its own key) in a
file beside the key's configuration: ``[gateway.keys] signer_state``, in
``demo-signing-keys/`` for the demo, a path owned by the key custodian otherwise.
Before signing, the log must extend that checkpoint (RFC 9162 consistency).

The file is self-authenticating: an edited state does not verify under the
signer's public key and is refused, like a missing one once the log has records,
until an operator re-anchors on purpose (``gateway audit checkpoint --reanchor``),
which the file then lists for good. Replaced atomically (write, fsync, rename).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from adapters.stores._durable_file import write_json_durably
from adapters.stores.audit_signing import verify_checkpoint
from gateway.core.merkle import Checkpoint, checkpoint_from_note, checkpoint_note
from gateway.core.signed_note import NoteError

__all__ = ["MemorySignerState", "SignerState", "SignerStateError", "SignerStateFile", "StateRecord"]

FORMAT = "passerelle.checkpoint-signer-state/1"


class SignerStateError(Exception):
    """The signer state cannot be trusted (unreadable, or not signed by this signer's key)."""


@dataclass(frozen=True, slots=True)
class StateRecord:
    """The last signed checkpoint, and every re-anchoring done by hand (never forgotten)."""

    checkpoint: Checkpoint
    reanchors: tuple[dict[str, Any], ...] = field(default=())


class SignerState(Protocol):
    where: str

    def load(self, public_key: bytes) -> StateRecord | None: ...
    def save(self, record: StateRecord) -> None: ...


class MemorySignerState:
    """The state of a signer that keeps nothing across restarts (tests, one-off tools)."""

    where = "memory"

    def __init__(self) -> None:
        self._record: StateRecord | None = None

    def load(self, public_key: bytes) -> StateRecord | None:
        return self._record

    def save(self, record: StateRecord) -> None:
        self._record = record


class SignerStateFile:
    """The state as one JSON file; ``load`` checks the note's signature under the signer's key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def load(self, public_key: bytes) -> StateRecord | None:
        """``None`` when the file does not exist; ``SignerStateError`` when it cannot be trusted."""
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SignerStateError(f"the signer state {self.path} is unreadable: {exc}") from None
        try:
            if doc.get("format") != FORMAT:
                raise ValueError(f"unknown format {doc.get('format')!r}")
            cp, _ = checkpoint_from_note(doc["note"], int(doc.get("time_us", 0)))
            reanchors = tuple(doc.get("reanchors", []))
        except (AttributeError, KeyError, TypeError, ValueError, NoteError) as exc:
            raise SignerStateError(f"the signer state {self.path} is not a signer state: {exc}") from None
        if not verify_checkpoint(cp, public_key):
            raise SignerStateError(f"the signer state {self.path} is not signed by this signer's key: "
                                   "it was edited, or belongs to another key")  # fmt: skip
        return StateRecord(cp, reanchors)

    def save(self, record: StateRecord) -> None:
        doc = {"format": FORMAT, "note": checkpoint_note(record.checkpoint).format(),
               "time_us": record.checkpoint.time_us, "reanchors": list(record.reanchors)}  # fmt: skip
        write_json_durably(self.path, doc)
