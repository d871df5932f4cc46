"""``gateway audit``: verify the log, sign a checkpoint, prove and check inclusion, purge.

Every command opens the audit store named by the configuration (``[gateway] audit``):
``--config FILE``, or the demo configuration in ``--data-dir`` (default ``.gateway-demo``).
They can run while the gateway serves: the stores are safe with several processes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from google.protobuf import json_format

__all__ = ["audit_app"]

T = TypeVar("T")

audit_app = typer.Typer(help="The tamper-evident exchange log: verify, checkpoint, prove, purge.",
                        no_args_is_help=True)  # fmt: skip

DataDirOpt = Annotated[Path, typer.Option("--data-dir", help="Demo data folder (used when --config is not given).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Configuration file (TOML).")]
_DEFAULT_DIR = Path(".gateway-demo")
#: Below this many records verification is quick enough to need no progress bar.
_PROGRESS_FROM = 20_000


def _config(config: Path | None, data_dir: Path) -> Any:
    from gateway.config import ConfigError, load_config

    path = config or data_dir / "gateway.toml"
    if not path.exists():
        typer.echo(f"no configuration at {path}: give --config FILE, or run `gateway serve --demo` first", err=True)
        raise typer.Exit(2)
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _with_store(config: Any, work: Callable[[Any], Awaitable[T]]) -> T:
    from gateway.bootstrap import _audit_store

    async def run() -> T:
        store = _audit_store(config)
        await store.start()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _signer(config: Any, store: Any) -> Any:
    from adapters.stores.audit_checkpoints import CheckpointSigner
    from gateway.bootstrap import now_us

    return CheckpointSigner(store, config.path(config.gateway.signing_key).read_bytes(), clock_us=now_us)


def _public_key(pem_file: Path | None) -> Any:
    from cryptography.hazmat.primitives import serialization

    return None if pem_file is None else serialization.load_pem_public_key(pem_file.read_bytes())


def _counting(rows: Iterator[Any], total: int) -> Iterator[Any]:
    """Rows passed through, with a progress bar on stderr when the log is large."""
    if total < _PROGRESS_FROM:
        yield from rows
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("verify", total=total)
        for n, row in enumerate(rows, 1):
            yield row
            if n % 5000 == 0:
                progress.update(task, completed=n)
        progress.update(task, completed=total)


@audit_app.command()
def verify(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = _DEFAULT_DIR,
    public_key: Annotated[Path | None, typer.Option("--public-key", help="Pin the checkpoint key (PEM); "
                                                    "default: the gateway's own signing key.")] = None,
) -> None:
    """Re-check the whole log (hash chain and every signed checkpoint); name the first bad record."""
    from gateway.core.audit_chain import verify_rows

    conf = _config(config, data_dir)

    async def work(store: Any) -> Any:
        signer = _signer(conf, store)
        pinned = _public_key(public_key)
        from adapters.stores.audit_signing import verify_checkpoint

        def valid(cp: Any) -> bool:
            return verify_checkpoint(cp, pinned) if pinned is not None else bool(signer.valid(cp))

        anchor, cps, (head, _) = await store.anchor(), await store.checkpoints(), await store.chain_head()
        rows = _counting(store.iter_rows(), head - anchor.seq)
        result = await asyncio.to_thread(verify_rows, rows, cps, anchor=anchor, checkpoint_valid=valid)
        return result, anchor, cps

    result, anchor, cps = _with_store(conf, work)
    since = f" (records before {anchor.seq + 1} were purged under retention)" if anchor.seq else ""
    if result.ok:
        typer.echo(f"OK: {result.records} records verified up to seq {result.head_seq}{since}; "
                   f"{result.checkpoints} of {len(cps)} signed checkpoints match")  # fmt: skip
        return
    typer.echo(f"TAMPERED: record {result.seq}: {result.tamper} ({result.detail}); "
               f"the log is intact up to seq {result.head_seq}{since}")  # fmt: skip
    raise typer.Exit(1)


@audit_app.command()
def checkpoint(config: ConfigOpt = None, data_dir: DataDirOpt = _DEFAULT_DIR) -> None:
    """Sign a checkpoint of the log now (the server also does this periodically)."""
    conf = _config(config, data_dir)

    async def work(store: Any) -> Any:
        return await _signer(conf, store).checkpoint(), await store.latest_checkpoint()

    made, latest = _with_store(conf, work)
    if made is None:
        size = latest.tree_size if latest else 0
        typer.echo(f"no new records since the latest checkpoint (tree size {size}); nothing signed")
        return
    typer.echo(f"signed checkpoint: tree size {made.tree_size}, root {made.root_hash.hex()}, key {made.key_id}")


@audit_app.command()
def prove(
    seq: Annotated[int, typer.Argument(help="The record's sequence number (the access id).")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = _DEFAULT_DIR,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the proof here.")] = None,
) -> None:
    """Print an inclusion proof of record SEQ in the latest signed checkpoint, as JSON."""
    from adapters.stores.audit_checkpoints import make_proof
    from gateway.entrypoints.services.transparency import proof_message

    conf = _config(config, data_dir)

    async def work(store: Any) -> Any:
        latest = await store.latest_checkpoint()
        proof = None if latest is None else await make_proof(store, seq, latest)
        return proof, latest, _signer(conf, store).public_key_pem

    proof, latest, pem = _with_store(conf, work)
    if proof is None:
        size = latest.tree_size if latest else 0
        typer.echo(f"record {seq} is not in the latest signed checkpoint (tree size {size}, or it was purged); "
                   "run `gateway audit checkpoint` and try again", err=True)  # fmt: skip
        raise typer.Exit(1)
    text = json_format.MessageToJson(proof_message(proof, pem), indent=2) + "\n"
    if output:
        output.write_text(text)
        typer.echo(f"proof of record {seq} written to {output}", err=True)
    else:
        sys.stdout.write(text)


@audit_app.command("check-proof")
def check_proof_cmd(
    file: Annotated[Path, typer.Argument(help="A proof from `gateway audit prove` or /v1/me/accesses/{id}/proof.")],
    public_key: Annotated[Path | None, typer.Option("--public-key", help="Pin the gateway key (PEM) instead of "
                                                    "trusting the one in the file.")] = None,
) -> None:
    """Check an inclusion proof offline: record hash, audit path, checkpoint signature."""
    from cryptography.hazmat.primitives import serialization

    from adapters.stores.audit_checkpoints import key_id_of
    from adapters.stores.audit_signing import verify_checkpoint
    from gateway._pb.passerelle.gateway.v1 import audit_pb2 as pb
    from gateway.core.audit_proof import PROOF_FORMAT, InclusionProof, check_proof
    from gateway.core.merkle import Checkpoint

    message = pb.AccessProof()
    try:
        json_format.Parse(file.read_text(), message)
    except (OSError, json_format.ParseError, json.JSONDecodeError) as exc:
        typer.echo(f"{file}: not a proof: {exc}", err=True)
        raise typer.Exit(2) from None
    if message.format != PROOF_FORMAT:
        typer.echo(f"{file}: unknown proof format {message.format!r}", err=True)
        raise typer.Exit(2)
    key = _public_key(public_key) or serialization.load_pem_public_key(message.public_key_pem.encode())
    c = message.checkpoint
    cp = Checkpoint(c.tree_size, c.root_hash, c.time_us, c.signature, c.key_id)
    try:
        path = tuple(bytes.fromhex(p) for p in message.audit_path)
    except ValueError:
        path = ()
    proof = InclusionProof(message.seq, message.record_hash, message.prev_hash, message.canonical, path, cp)
    problems = check_proof(proof, lambda payload, sig: verify_checkpoint(cp, key))  # type: ignore[arg-type]
    if problems:
        for p in problems:
            typer.echo(f"INVALID: {p}")
        raise typer.Exit(1)
    typer.echo(f"OK: record {proof.seq} is in the checkpoint of tree size {cp.tree_size} signed at {c.time} "
               f"by key {key_id_of(key)}")  # type: ignore[arg-type]  # fmt: skip


@audit_app.command()
def purge(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = _DEFAULT_DIR,
    older_than_days: Annotated[int | None, typer.Option("--older-than-days", help="Default: "
                                                        "[gateway] audit_retention_days.")] = None,
) -> None:
    """Delete records older than the retention; the rest stays verifiable (checkpoint first, then purge)."""
    from gateway.bootstrap import now_us
    from gateway.core.audit_proof import retention_cutoff_us

    conf = _config(config, data_dir)
    days = conf.gateway.audit_retention_days if older_than_days is None else older_than_days
    cutoff = retention_cutoff_us(now_us(), days)
    if cutoff is None:
        typer.echo("no retention configured ([gateway] audit_retention_days = 0): nothing purged")
        return

    async def work(store: Any) -> int:
        await _signer(conf, store).checkpoint()
        purged: int = await store.purge_before(cutoff)
        return purged

    typer.echo(f"purged {_with_store(conf, work)} records older than {days} days")
