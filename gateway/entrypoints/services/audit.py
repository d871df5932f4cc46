"""Signed audit checkpoints: the periodic signer, the retention purge, and ``GET /v1/audit/checkpoints``.

``GET /v1/audit/checkpoints`` is public on purpose: a checkpoint (tree size,
root hash, time, signature) carries no personal data, and a transparency log's
tree heads are only useful if anyone can fetch them to check a proof against.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from adapters.stores.audit_checkpoints import CheckpointSigner
from gateway._pb.passerelle.gateway.v1 import audit_pb2 as pb
from gateway.core.audit_proof import retention_cutoff_us
from gateway.core.merkle import Checkpoint, checkpoint_payload
from gateway.core.transparency import iso_time
from gateway.entrypoints.binding import Access, Call, ServiceBinding

if TYPE_CHECKING:
    from gateway.bootstrap import Gateway

__all__ = ["checkpoint_message", "checkpoints_binding", "install_audit", "periodic", "signer_for"]

log = logging.getLogger("passerelle.audit")
MAX_HISTORY = 1000


def signer_for(gateway: Gateway) -> CheckpointSigner:
    from gateway.bootstrap import now_us

    pem = gateway.config.path(gateway.config.gateway.signing_key).read_bytes()
    return CheckpointSigner(gateway.audit, pem, clock_us=now_us)


def checkpoint_message(cp: Checkpoint) -> pb.Checkpoint:
    note = checkpoint_payload(cp.tree_size, cp.root_hash, cp.time_us, cp.key_id).decode()
    return pb.Checkpoint(tree_size=cp.tree_size, root_hash=cp.root_hash, time=iso_time(cp.time_us),
                         time_us=cp.time_us, key_id=cp.key_id, signature=cp.signature, note=note)  # fmt: skip


def checkpoints_binding(gateway: Gateway, signer: CheckpointSigner) -> ServiceBinding:
    async def list_checkpoints(request: pb.ListCheckpointsRequest, call: Call) -> pb.ListCheckpointsResponse:
        limit = 100 if request.limit <= 0 else min(request.limit, MAX_HISTORY)
        cps = await gateway.audit.checkpoints()
        answer = pb.ListCheckpointsResponse(public_key_pem=signer.public_key_pem.decode(), key_id=signer.key_id)
        if cps:
            answer.latest.CopyFrom(checkpoint_message(cps[-1]))
        answer.history.extend(checkpoint_message(cp) for cp in reversed(cps[-limit:]))
        return answer

    return ServiceBinding(
        service="passerelle.gateway.v1.AuditCheckpoints",
        handlers={"ListCheckpoints": list_checkpoints},
        access={"ListCheckpoints": Access("public")},
        tags=["audit"],
    )


async def periodic(name: str, every_s: float, step: Callable[[], Awaitable[object]]) -> None:
    """Run ``step`` every ``every_s`` seconds until cancelled; a failing step is logged, not fatal."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await step()
        except asyncio.CancelledError:
            raise
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


async def install_audit(gateway: Gateway) -> None:
    """The checkpoints API, the periodic signer and the retention purge (a FEATURES entry)."""
    from gateway.bootstrap import now_us

    conf = gateway.config.gateway
    signer = signer_for(gateway)
    gateway.bindings.append(checkpoints_binding(gateway, signer))
    if conf.checkpoint_interval_s > 0:
        _start(gateway, "checkpoint", conf.checkpoint_interval_s, signer.checkpoint)
    if conf.audit_retention_days > 0:
        _start(gateway, "retention", conf.retention_interval_s, lambda: purge_expired(gateway, signer, now_us()))

    async def final_checkpoint() -> None:
        # Runs before the store closes (closers run in reverse): the last exchanges get a signed head.
        with contextlib.suppress(Exception):
            await signer.checkpoint()

    if conf.checkpoint_interval_s > 0:
        gateway.closers.insert(0, final_checkpoint)
