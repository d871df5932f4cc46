"""C2SP signed notes, transparency-log checkpoints and witness cosignatures.

Standards followed (all v1.0.0):

- c2sp.org/signed-note: a note is UTF-8 text ending in a newline, a blank line,
  then signature lines ``— <key name> <base64(key id (4 bytes, big-endian) || signature)>``.
  Ed25519 key id = ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``.
- c2sp.org/tlog-checkpoint: the note text is the origin line, the tree size in
  decimal and the base64 RFC 6962/9162 root hash (no extension lines here).
- c2sp.org/tlog-cosignature: a witness's timestamped Ed25519 cosignature, key
  id with type byte 0x04, signature ``u64 timestamp (big-endian, POSIX seconds)
  || Ed25519(cosignature/v1 message)`` where the message is
  ``"cosignature/v1\\ntime <timestamp>\\n" || checkpoint note text``.

Verifier keys ("vkeys", as in Go's ``golang.org/x/mod/sumdb/note``) are
``<name>+<key id, 8 hex digits>+<base64(type byte || 32-byte public key)>``.

Pure: Ed25519 verification is computation, not I/O; signing is a callable passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "COSIGNATURE_TYPE",
    "ED25519_TYPE",
    "CheckpointText",
    "Cosignature",
    "Note",
    "NoteError",
    "NoteSignature",
    "Verifier",
    "checkpoint_text",
    "cosign",
    "cosignature_message",
    "ed25519_ok",
    "key_id",
    "parse_checkpoint_text",
    "parse_note",
    "parse_vkey",
    "verify_cosignature",
    "verify_note",
    "vkey",
]

ED25519_TYPE = 0x01
COSIGNATURE_TYPE = 0x04
_DASH = "\u2014"
_MAX_SIGNATURES = 64
_NAME = re.compile(r"^[^\s+]+$")


class NoteError(ValueError):
    """The text is not a well-formed signed note, checkpoint or vkey; the message says why."""


def key_id(name: str, public_key: bytes, sig_type: int = ED25519_TYPE) -> bytes:
    """The 4-byte C2SP key id of an Ed25519 key (``sig_type`` 0x01 for notes, 0x04 for cosignatures)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


@dataclass(frozen=True, slots=True)
class Verifier:
    """A trusted key: name, signature type, raw 32-byte Ed25519 public key."""

    name: str
    sig_type: int
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key, self.sig_type)


def vkey(name: str, public_key: bytes, sig_type: int = ED25519_TYPE) -> str:
    """The verifier key text of ``(name, public_key)``."""
    kid = key_id(name, public_key, sig_type).hex()
    return f"{name}+{kid}+{base64.b64encode(bytes([sig_type]) + public_key).decode()}"


def parse_vkey(text: str) -> Verifier:
    """Parse a vkey; raises ``NoteError`` if malformed or if its key id does not match the key."""
    parts = text.strip().split("+", 2)  # base64 may hold "+", the name may not
    if len(parts) != 3 or not _NAME.match(parts[0]) or len(parts[1]) != 8:
        raise NoteError("a verifier key is <name>+<8 hex digits>+<base64 key>")
    try:
        raw, kid = base64.b64decode(parts[2], validate=True), bytes.fromhex(parts[1])
    except (binascii.Error, ValueError):
        raise NoteError("a verifier key is <name>+<8 hex digits>+<base64 key>") from None
    if len(raw) != 33 or raw[0] not in (ED25519_TYPE, COSIGNATURE_TYPE):
        raise NoteError("only Ed25519 verifier keys (type 0x01 or 0x04) are supported")
    verifier = Verifier(parts[0], raw[0], raw[1:])
    if verifier.key_id != kid:
        raise NoteError("the verifier key's id does not match its name and key")
    return verifier


@dataclass(frozen=True, slots=True)
class NoteSignature:
    name: str
    key_id: bytes      # 4 bytes
    signature: bytes   # what follows the key id (64 bytes Ed25519; 8 + 64 for a cosignature)

    def line(self) -> str:
        return f"{_DASH} {self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"


@dataclass(frozen=True, slots=True)
class Note:
    text: str                             # the signed text, final newline included
    signatures: tuple[NoteSignature, ...]

    def format(self) -> str:
        """The note as served: text, blank line, one line per signature."""
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


def parse_note(data: str) -> Note:
    """Split a signed note into its text and signature lines (no signature is checked)."""
    if any(ord(c) < 0x20 and c != "\n" for c in data):
        raise NoteError("a note holds no control characters but newlines")
    cut = data.rfind("\n\n")
    if cut < 0 or not data.endswith("\n"):
        raise NoteError("a signed note is text, a blank line and signature lines, each ending in a newline")
    text, lines = data[: cut + 1], data[cut + 2 :].splitlines()
    if not lines or len(lines) > _MAX_SIGNATURES:
        raise NoteError(f"a signed note has 1 to {_MAX_SIGNATURES} signature lines")
    return Note(text, tuple(_signature_line(line) for line in lines))


def _signature_line(line: str) -> NoteSignature:
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != _DASH or not _NAME.match(parts[1]):
        raise NoteError(f"not a signature line: {line[:80]!r}")
    try:
        raw = base64.b64decode(parts[2], validate=True)
    except binascii.Error:
        raise NoteError(f"signature of {parts[1]!r} is not base64") from None
    if len(raw) < 5:
        raise NoteError(f"signature of {parts[1]!r} is too short")
    return NoteSignature(parts[1], raw[:4], raw[4:])


def ed25519_ok(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """RFC 8032 Ed25519 verification; False for any malformed key or signature."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _by(note: Note, verifier: Verifier) -> list[NoteSignature]:
    kid = verifier.key_id
    return [s for s in note.signatures if s.name == verifier.name and s.key_id == kid]


def verify_note(note: Note, verifier: Verifier) -> bool:
    """Does ``note`` carry a valid Ed25519 (type 0x01) signature by ``verifier``? Unknown keys are ignored."""
    found = _by(note, verifier)
    message = note.text.encode()
    return bool(found) and all(ed25519_ok(verifier.public_key, message, s.signature) for s in found)


@dataclass(frozen=True, slots=True)
class CheckpointText:
    """The three lines of a C2SP checkpoint."""

    origin: str
    tree_size: int
    root_hash: bytes


def checkpoint_text(origin: str, tree_size: int, root_hash: bytes) -> str:
    """The note text of a checkpoint: origin, decimal size, base64 root, each ending in a newline."""
    if not _NAME.match(origin):
        raise NoteError("a checkpoint origin is non-empty, without spaces or '+'")
    return f"{origin}\n{tree_size}\n{base64.b64encode(root_hash).decode()}\n"


def parse_checkpoint_text(text: str) -> CheckpointText:
    """Parse a checkpoint's note text (extension lines are refused: none are signed here)."""
    lines = text.split("\n")
    if len(lines) != 4 or lines[3] != "":
        raise NoteError("a checkpoint is three lines: origin, tree size, root hash")
    origin, size, root = lines[:3]
    if not origin or not size.isdigit() or (size != "0" and size.startswith("0")):
        raise NoteError("the checkpoint's origin is empty or its size is not a decimal number")
    try:
        root_hash = base64.b64decode(root, validate=True)
    except binascii.Error:
        raise NoteError("the checkpoint's root hash is not base64") from None
    if len(root_hash) != 32:
        raise NoteError("the checkpoint's root hash is not 32 bytes")
    return CheckpointText(origin, int(size), root_hash)


@dataclass(frozen=True, slots=True)
class Cosignature:
    """A witness's tlog-cosignature/v1 on one checkpoint text."""

    witness: str
    key_id: bytes      # 4 bytes, type 0x04
    timestamp: int     # POSIX seconds
    signature: bytes   # 64 bytes

    def note_signature(self) -> NoteSignature:
        return NoteSignature(self.witness, self.key_id, self.timestamp.to_bytes(8, "big") + self.signature)


def cosignature_message(text: str, timestamp: int) -> bytes:
    """The bytes a witness signs: header, time line, then the checkpoint's note text."""
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


def cosign(text: str, timestamp: int, name: str, public_key: bytes, sign: Callable[[bytes], bytes]) -> Cosignature:
    """Cosign checkpoint ``text`` at ``timestamp`` with ``sign`` (an Ed25519 key named ``name``)."""
    kid = key_id(name, public_key, COSIGNATURE_TYPE)
    return Cosignature(name, kid, timestamp, sign(cosignature_message(text, timestamp)))


def verify_cosignature(text: str, signatures: Iterable[NoteSignature], verifier: Verifier) -> Cosignature | None:
    """The valid cosignature by ``verifier`` among ``signatures`` on ``text``, or ``None``."""
    kid = key_id(verifier.name, verifier.public_key, COSIGNATURE_TYPE)
    for s in signatures:
        if s.name != verifier.name or s.key_id != kid or len(s.signature) != 72:
            continue
        timestamp = int.from_bytes(s.signature[:8], "big")
        if timestamp < 2**63 and ed25519_ok(verifier.public_key, cosignature_message(text, timestamp),
                                            s.signature[8:]):  # fmt: skip
            return Cosignature(s.name, kid, timestamp, s.signature[8:])
    return None
