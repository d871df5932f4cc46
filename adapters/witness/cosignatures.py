"""The gateway side of witnessing: fetch each witness's cosigned checkpoint, check it, keep it.

A witness serves its latest cosigned checkpoint at ``GET {url}/checkpoint`` as a
C2SP signed note (the log's signature line, then its tlog-cosignature line). The
gateway keeps a cosignature only if the note text is exactly one of its own
signed checkpoints and the cosignature verifies under the configured witness key;
anything else is logged and dropped.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.core.merkle import Checkpoint, checkpoint_from_note, checkpoint_payload
from gateway.core.signed_note import COSIGNATURE_TYPE, NoteError, Verifier, parse_vkey, verify_cosignature

__all__ = ["WitnessKey", "collect_cosignatures", "witness_key", "witnessed_checkpoints"]

log = logging.getLogger("passerelle.audit")


@dataclass(frozen=True, slots=True)
class WitnessKey:
    name: str
    url: str
    verifier: Verifier


def witness_key(name: str, url: str, public_key: str) -> WitnessKey:
    """A configured witness; ``public_key`` is a vkey or base64 of the raw 32 bytes. Raises ``ValueError``."""
    if public_key.startswith(f"{name}+"):
        verifier = parse_vkey(public_key)
        return WitnessKey(name, url.rstrip("/"), Verifier(name, COSIGNATURE_TYPE, verifier.public_key))
    try:
        raw = base64.b64decode(public_key, validate=True)
    except binascii.Error:
        raise ValueError(f"witness {name!r}: public_key is neither a vkey nor base64") from None
    if len(raw) != 32:
        raise ValueError(f"witness {name!r}: an Ed25519 public key is 32 bytes")
    return WitnessKey(name, url.rstrip("/"), Verifier(name, COSIGNATURE_TYPE, raw))


async def collect_cosignatures(store: Any, witnesses: Sequence[WitnessKey], client: httpx.AsyncClient) -> int:
    """Fetch, check and store each witness's latest cosignature; return how many were kept."""
    kept = 0
    for w in witnesses:
        try:
            kept += await _collect_one(store, w, client)
        except (httpx.HTTPError, NoteError) as exc:
            log.warning("witness unreachable or answered nonsense",
                        extra={"fields": {"witness": w.name, "error": str(exc)[:200]}})  # fmt: skip
    return kept


async def _collect_one(store: Any, w: WitnessKey, client: httpx.AsyncClient) -> int:
    answer = await client.get(f"{w.url}/checkpoint")
    if answer.status_code == 404:  # nothing cosigned yet
        return 0
    answer.raise_for_status()
    cp, note = checkpoint_from_note(answer.text)
    ours = {c.tree_size: c for c in await store.checkpoints()}.get(cp.tree_size)
    if ours is None or checkpoint_payload(ours).decode() != note.text:
        log.error("a witness cosigned a checkpoint this gateway did not sign",
                  extra={"fields": {"witness": w.name, "tree_size": cp.tree_size}})  # fmt: skip
        return 0
    cosignature = verify_cosignature(note.text, note.signatures, w.verifier)
    if cosignature is None:
        log.error("a witness's cosignature does not verify", extra={"fields": {"witness": w.name}})
        return 0
    await store.add_cosignature(cp.tree_size, cosignature)
    return 1


async def witnessed_checkpoints(
    witnesses: Sequence[WitnessKey], client: httpx.AsyncClient
) -> list[tuple[str, Checkpoint]]:  # fmt: skip
    """Each reachable witness's latest checkpoint that carries its valid cosignature, as ``(name, checkpoint)``.

    The witnesses' URLs come from the configuration, not from the log's database: what
    they cosigned is evidence the database administrator cannot rewrite. The log's own
    signature is checked by the caller. Unreachable witnesses are logged and skipped.
    """
    found: list[tuple[str, Checkpoint]] = []
    for w in witnesses:
        try:
            answer = await client.get(f"{w.url}/checkpoint")
            if answer.status_code == 404:
                continue
            answer.raise_for_status()
            cp, note = checkpoint_from_note(answer.text)
        except (httpx.HTTPError, NoteError) as exc:
            log.warning("witness unreachable before signing", extra={"fields": {"witness": w.name,
                                                                                 "error": str(exc)[:200]}})
            continue
        if verify_cosignature(note.text, note.signatures, w.verifier) is not None:
            found.append((w.name, cp))
    return found
