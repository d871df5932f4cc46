"""Signed audit checkpoints: the periodic signer, witnesses' cosignatures, the retention purge, and
``GET /v1/audit/checkpoints``, ``GET /v1/audit/consistency`` (``AuditCheckpoints``, both doors); the
latest checkpoint as note text (``GET /v1/audit/checkpoint``) is a REST route of the front door
(``gateway.entrypoints.routes_audit``) over ``latest_cosigned_note``.

The signer, the witnesses' keys and the cosignature fetching are chosen by the composition root
(``gateway.bootstrap_audit``) and reach this module as ports.

These are public on purpose: a checkpoint (C2SP tlog-checkpoint note: origin, tree
size, root hash, Ed25519 signature) carries no personal data, and a transparency
log's tree heads and consistency proofs are only useful if anyone can fetch them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from gateway._pb.passerelle.gateway.v1 import audit_pb2 as pb
from gateway.application.runtime import Gateway
from gateway.application.service import Access, Call, ServiceBinding
from gateway.core.audit_proof import SigningRefused, retention_cutoff_us
from gateway.core.clock import now_us
from gateway.core.errors import GatewayError, Reason
from gateway.core.merkle import Checkpoint, checkpoint_note
from gateway.core.ports import AuditStore, CheckpointSigner, CosignatureCollector
from gateway.core.signed_note import Cosignature, Note
from gateway.core.transparency import iso_time

__all__ = [
    "checkpoint_message", "checkpoints_binding", "cosigned_text", "install_audit", "latest_cosigned_note", "periodic",
    "purge_expired",
]  # fmt: skip

log = logging.getLogger("passerelle.audit")
MAX_HISTORY = 1000


def cosigned_text(cp: Checkpoint, cosignatures: list[Cosignature]) -> str:
    """The checkpoint note with the witnesses' cosignature lines appended (C2SP tlog-cosignature)."""
    note = checkpoint_note(cp)
    return Note(note.text, (*note.signatures, *(c.note_signature() for c in cosignatures))).format()


def checkpoint_message(cp: Checkpoint, cosignatures: list[Cosignature] | None = None) -> pb.Checkpoint:
    cos = cosignatures or []
    return pb.Checkpoint(
        tree_size=cp.tree_size, root_hash=cp.root_hash, time=iso_time(cp.time_us), time_us=cp.time_us,
        key_id=cp.key_id, signature=cp.signature, note=checkpoint_note(cp).format(), origin=cp.origin,
        cosignatures=[pb.Cosignature(witness=c.witness, key_id=c.key_id.hex(), timestamp=c.timestamp,
                                     time=iso_time(c.timestamp * 1_000_000), line=c.note_signature().line())
                      for c in cos],
        cosigned_note=cosigned_text(cp, cos),
    )  # fmt: skip


def checkpoints_binding(gateway: Gateway, signer: CheckpointSigner, witness_vkeys: list[str]) -> ServiceBinding:
    async def list_checkpoints(request: pb.ListCheckpointsRequest, call: Call) -> pb.ListCheckpointsResponse:
        limit = 100 if request.limit <= 0 else min(request.limit, MAX_HISTORY)
        cps = await gateway.audit.checkpoints()
        answer = pb.ListCheckpointsResponse(public_key_pem=signer.public_key_pem.decode(), key_id=signer.key_id,
                                            vkey=signer.vkey, witness_vkeys=witness_vkeys)  # fmt: skip
        for cp in reversed(cps[-limit:]):
            answer.history.append(checkpoint_message(cp, await gateway.audit.cosignatures(cp.tree_size)))
        if cps:
            answer.latest.CopyFrom(answer.history[0])
        return answer

    async def consistency(request: pb.GetConsistencyProofRequest, call: Call) -> pb.ConsistencyProof:
        old, new = request.from_size, request.to_size
        head, _ = await gateway.audit.chain_head()
        if not 0 < old <= new <= head:
            raise GatewayError(Reason.INVALID_ARGUMENT, f"Need 0 < from <= to <= {head} (the log's size)")
        try:
            hashes = await gateway.audit.consistency_proof(old, new)
        except ValueError:
            raise GatewayError(Reason.NOT_FOUND, f"No consistency proof from {old}: records it needs were purged "
                                                 "under retention; ask from a later checkpoint") from None
        return pb.ConsistencyProof(from_size=old, to_size=new, hashes=hashes)

    return ServiceBinding(
        service="passerelle.gateway.v1.AuditCheckpoints",
        handlers={"ListCheckpoints": list_checkpoints, "GetConsistencyProof": consistency},
        access={"ListCheckpoints": Access("public"), "GetConsistencyProof": Access("public")},
        tags=["audit"],
    )


async def latest_cosigned_note(audit: AuditStore) -> str | None:
    """The latest checkpoint as C2SP note text, with its cosignatures; None before the first is signed."""
    latest = await audit.latest_checkpoint()
    if latest is None:
        return None
    return cosigned_text(latest, await audit.cosignatures(latest.tree_size))


async def periodic(name: str, every_s: float, step: Callable[[], Awaitable[object]]) -> None:
    """Run ``step`` every ``every_s`` seconds until cancelled; a failing step is logged, not fatal."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except OSError as exc:  # the signing key or the store is unreachable: expected, one line, retried
            log.error("audit task failed: %s", str(exc)[:200], extra={"fields": {"task": name}})
        except SigningRefused as exc:  # the log contradicts a signature, or the signer lost its memory
            log.error("AUDIT LOG NOT SIGNED: %s", str(exc)[:500], extra={"fields": {"task": name}})
        except Exception:
            log.exception("audit task failed", extra={"fields": {"task": name}})


async def purge_expired(gateway: Gateway, signer: CheckpointSigner, now_us: int) -> int:
    """Checkpoint first (so the purged records stay covered by a signed tree head), then purge."""
    cutoff = retention_cutoff_us(now_us, gateway.config.gateway.audit_retention_days)
    if cutoff is None:
        return 0
    await signer.checkpoint()
    purged: int = await gateway.audit.purge_before(cutoff)
    if purged:
        log.info("audit records purged", extra={"fields": {"purged": purged, "before_us": cutoff}})
    return purged


def _start(gateway: Gateway, name: str, every_s: float, step: Callable[[], Awaitable[object]]) -> None:
    task = asyncio.create_task(periodic(name, every_s, step), name=f"audit-{name}")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    gateway.closers.append(stop)


async def install_audit(
    gateway: Gateway, *, witness_vkeys: list[str], collect_cosignatures: CosignatureCollector | None
) -> None:
    """The checkpoints API, the periodic signer, cosignature fetching and the retention purge.

    ``witness_vkeys``: the configured witnesses' keys, published with the checkpoints;
    ``collect_cosignatures``: fetches their cosignatures, None when no witness is configured.
    """
    conf = gateway.config.gateway
    signer = gateway.checkpoint_signer
    try:
        await signer.prepare()
    except (SigningRefused, OSError) as exc:  # exchanges are still recorded; nothing is signed until resolved
        log.error("AUDIT LOG NOT SIGNED: %s", str(exc)[:500], extra={"fields": {"task": "start-up"}})
    gateway.bindings.append(checkpoints_binding(gateway, signer, witness_vkeys))
    if conf.checkpoint_interval_s > 0:
        _start(gateway, "checkpoint", conf.checkpoint_interval_s, signer.checkpoint)
    if conf.audit_retention_days > 0:
        _start(gateway, "retention", conf.retention_interval_s, lambda: purge_expired(gateway, signer, now_us()))
    if collect_cosignatures is not None:
        _start(gateway, "cosignatures", conf.witness_poll_s, collect_cosignatures)

    async def final_checkpoint() -> None:
        # Runs before the store closes (closers run in reverse): the last exchanges get a signed head.
        with contextlib.suppress(Exception):
            await signer.checkpoint()

    if conf.checkpoint_interval_s > 0:
        gateway.closers.insert(0, final_checkpoint)
