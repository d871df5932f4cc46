"""C2SP signed notes, checkpoints, vkeys and cosignatures (c2sp.org signed-note, tlog-checkpoint, tlog-cosignature)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from adapters.keys.file_signer import FileNoteSigner, generate_ed25519_pem
from adapters.stores.audit_signing import sign_checkpoint, verify_checkpoint
from gateway.core.merkle import Checkpoint, checkpoint_from_note, checkpoint_note
from gateway.core.signed_note import (
    COSIGNATURE_TYPE,
    NoteError,
    Verifier,
    checkpoint_text,
    cosign,
    parse_checkpoint_text,
    parse_note,
    parse_vkey,
    verify_cosignature,
    verify_note,
    vkey,
)

ROOT = hashlib.sha256(b"root").digest()


def test_the_key_id_is_the_c2sp_one() -> None:
    signer = FileNoteSigner("example.com/log", generate_ed25519_pem())
    expected = hashlib.sha256(b"example.com/log\n\x01" + signer.public_key).digest()[:4]
    assert parse_vkey(vkey(signer.name, signer.public_key)).key_id == expected


def test_a_checkpoint_note_has_three_lines_a_blank_line_and_an_em_dash_signature() -> None:
    signer = FileNoteSigner("example.com/log", generate_ed25519_pem())
    cp = sign_checkpoint(Checkpoint(20852163, ROOT, 1), signer)
    text = checkpoint_note(cp).format()
    lines = text.split("\n")
    assert lines[:4] == ["example.com/log", "20852163", base64.b64encode(ROOT).decode(), ""]
    assert lines[4].startswith("\u2014 example.com/log ") and lines[5] == ""
    assert len(base64.b64decode(lines[4].split(" ")[2])) == 4 + 64
    parsed, note = checkpoint_from_note(text)
    assert (parsed.tree_size, parsed.root_hash, parsed.signature) == (cp.tree_size, cp.root_hash, cp.signature)
    assert verify_note(note, Verifier(signer.name, 1, signer.public_key))
    assert verify_checkpoint(parsed, signer.public_key)


def test_a_note_signed_by_another_key_or_altered_does_not_verify() -> None:
    signer = FileNoteSigner("example.com/log", generate_ed25519_pem())
    attacker = FileNoteSigner("example.com/log", generate_ed25519_pem())
    cp = sign_checkpoint(Checkpoint(5, ROOT, 1), attacker)
    note = parse_note(checkpoint_note(cp).format())
    assert not verify_note(note, Verifier(signer.name, 1, signer.public_key))
    assert not verify_checkpoint(cp, signer.public_key)
    good = sign_checkpoint(Checkpoint(5, ROOT, 1), signer)
    assert not verify_checkpoint(Checkpoint(6, ROOT, 1, good.signature, good.key_id, good.origin), signer.public_key)


@pytest.mark.parametrize("text", ["no blank line\n— a b\n", "a\n\n— a !!!\n", "a\n\nsig\n", "a\x01\n\n— a AAAAAA==\n"])
def test_malformed_notes_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        parse_note(text)


@pytest.mark.parametrize("text", ["o\n01\nAAAA\n", "o\n1\n" + "A" * 44 + "\nextension\n", "\n1\nx\n"])
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        parse_checkpoint_text(text)


def test_a_cosignature_is_timestamped_and_signs_the_cosignature_v1_message() -> None:
    witness = FileNoteSigner("witness.example/w1", generate_ed25519_pem())
    text = checkpoint_text("example.com/log", 7, ROOT)
    cos = cosign(text, 1679315147, witness.name, witness.public_key, witness.sign)
    verifier = Verifier(witness.name, COSIGNATURE_TYPE, witness.public_key)
    assert cos.key_id == hashlib.sha256(b"witness.example/w1\n\x04" + witness.public_key).digest()[:4]
    assert witness.public_key and cos.note_signature().signature[:8] == (1679315147).to_bytes(8, "big")
    assert verify_cosignature(text, [cos.note_signature()], verifier) == cos
    other = checkpoint_text("example.com/log", 8, ROOT)
    assert verify_cosignature(other, [cos.note_signature()], verifier) is None
