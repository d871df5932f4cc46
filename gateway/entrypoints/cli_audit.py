"""``gateway audit``: verify the log, sign a checkpoint, prove and check inclusion, purge, run a witness.

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

from gateway.core.clock import now_us

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
        conf = load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    from gateway.config_files import store_problems

    for problem in (problems := store_problems(conf, "audit")):   # one line each, not a store's traceback
        typer.echo(f"{path}: {problem}", err=True)
    if problems:
        raise typer.Exit(2)
    return conf


def _with_store(config: Any, work: Callable[[Any], Awaitable[T]]) -> T:
    from gateway.bootstrap_audit import audit_store_for

    async def run() -> T:
        store = audit_store_for(config)
        await store.start()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _signer(config: Any, store: Any) -> Any:
    """The checkpoint signer as the server builds it: its state outside the database, the witnesses."""
    from gateway.bootstrap_audit import checkpoint_signer_for

    return checkpoint_signer_for(config, store)


def _signer_state_note(config: Any) -> str:
    """The signed note in the checkpoint signer's state file, if this user can read it ("" otherwise)."""
    path = config.path(config.gateway.keys.signer_state_file)
    try:
        return str(json.loads(path.read_text()).get("note", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def _log_key(given: str | None, origin: str, fallback: Callable[[], bytes]) -> Any:
    """The log's verifier: ``given`` is a vkey, or a file holding a vkey or an Ed25519 PEM; else ``fallback()``."""
    from adapters.stores.audit_signing import raw_public_key
    from gateway.core.signed_note import ED25519_TYPE, NoteError, Verifier, parse_vkey

    if given is None:
        return Verifier(origin, ED25519_TYPE, fallback())
    text = Path(given).read_bytes() if Path(given).is_file() else given.encode()
    try:
        if b"-----BEGIN" in text:
            return Verifier(origin, ED25519_TYPE, raw_public_key(text))
        return parse_vkey(text.decode().strip())
    except (NoteError, TypeError, ValueError) as exc:
        typer.echo(f"--public-key: not an Ed25519 PEM or a verifier key: {exc}", err=True)
        raise typer.Exit(2) from None


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
    public_key: Annotated[str | None, typer.Option("--public-key", help="Pin the log key: a C2SP vkey, or a file "
                                                   "with a vkey or an Ed25519 PEM. Default: the gateway's own "
                                                   "key, which whoever holds the key folder can replace.")] = None,
    trusted: Annotated[list[str] | None, typer.Option("--trusted", metavar="FILE|URL",
                                                      help="A signed checkpoint kept outside the "
                                                      "database: a file or an http(s) URL (a witness's "
                                                      "/checkpoint, a saved note, proof or checkpoints JSON). "
                                                      "Repeatable.")] = None,
    witness_key: Annotated[list[str] | None, typer.Option("--witness-key", metavar="NAME=PUBKEY",
                                                          help="NAME=PUBKEY (vkey or base64 "
                                                          "Ed25519), or a file of such lines, of a witness whose "
                                                          "cosignatures count. Required with --min-cosignatures: "
                                                          "the operator's gateway.toml is not where an auditor "
                                                          "should take witness keys from.")] = None,
    min_cosignatures: Annotated[int, typer.Option("--min-cosignatures", min=0, help="Valid witness "
                                                  "cosignatures required on the trusted checkpoint(s); needs "
                                                  "--witness-key (keys you obtained from the witnesses).")] = 0,
    max_unsigned_intervals: Annotated[int, typer.Option("--max-unsigned-intervals", min=1, help="Fail when "
                                                        "records stay uncovered by a signed checkpoint longer "
                                                        "than this many checkpoint intervals.")] = 3,
) -> None:
    """Re-check the whole log: hash chain, every signed checkpoint, coverage, and trusted checkpoints.

    Fails (exit 1), naming each cause: a bad record; a bad checkpoint signature; fewer matching
    checkpoints than signed ones; records uncovered by a signed checkpoint for too long; a
    retention anchor without a checkpoint or without retention; disagreement with a trusted
    checkpoint (rollback, rewrite); too few witness cosignatures.
    """
    from adapters.stores.audit_verification import VerifyPolicy, check_log

    conf = _config(config, data_dir)
    if min_cosignatures > 0 and not witness_key:
        typer.echo("--min-cosignatures needs --witness-key NAME=PUBKEY (or a file of them): witness keys taken "
                   "from the operator's own configuration prove nothing against that operator", err=True)
        raise typer.Exit(2)
    notes = [_read_trusted(t) for t in trusted or []]
    policy = VerifyPolicy(now_us(), conf.gateway.checkpoint_interval_s, conf.gateway.audit_retention_days,
                          max_unsigned_intervals, min_cosignatures, _witness_keys(witness_key or []),
                          signer_state=_signer_state_note(conf))  # fmt: skip

    async def work(store: Any) -> Any:
        key = _log_key(public_key, conf.gateway.log_origin, lambda: _signer(conf, store).public_key)
        return await check_log(store, key, policy, notes, progress=_counting)

    check = _with_store(conf, work)
    result, anchor, cps = check.result, check.anchor, check.checkpoints
    since = f" (records before {anchor.seq + 1} were purged under retention)" if anchor.seq else ""
    if not result.ok:
        typer.echo(f"TAMPERED: record {result.seq}: {result.tamper} ({result.detail}); {_verified_up_to(result)}"
                   f"{since}")  # fmt: skip
        raise typer.Exit(1)
    for finding in check.findings:
        typer.echo(f"FAILED: {finding}")
    if check.findings:
        raise typer.Exit(1)
    older = sum(1 for cp in cps if cp.tree_size < anchor.seq)
    extra = f" ({older} older ones predate the retention anchor: signature checked only)" if older else ""
    witnessed = f"; {len(notes)} trusted checkpoint(s) agree, cosigned by {sorted(check.cosigned)}" if notes else ""
    state = "; the signer's own state agrees" if policy.signer_state else ""
    typer.echo(f"OK: {result.records} records verified up to seq {result.head_seq}{since}; "
               f"all {result.checkpoints} signed checkpoints match{extra}{state}{witnessed}")  # fmt: skip
    if not notes:
        typer.echo(_UNTRUSTED_LIMITS)


_UNTRUSTED_LIMITS = (
    "NOT CHECKED without --trusted: this log was compared only with itself and its checkpoints. Whoever holds "
    "the signing key (or root on its host) can rewrite and re-sign it; records after the latest signed "
    "checkpoint can be dropped or rewritten; record and checkpoint times are written by the database and "
    "prove nothing. Give --trusted with a checkpoint kept outside this database (a witness's /checkpoint, a "
    "saved proof), and --min-cosignatures with --witness-key."
)


def _verified_up_to(result: Any) -> str:
    """Where the verified log ends: for a chain break, where the chain holds; else the last matching checkpoint."""
    from gateway.core.audit_chain import Tamper

    signed = (f"the last signed checkpoint that matches covers records up to seq {result.signed_seq}"
              if result.signed_seq else "no signed checkpoint matches")  # fmt: skip
    if result.tamper in (Tamper.CHECKPOINT, Tamper.TRUNCATED):
        return signed
    return f"the chain holds up to seq {result.head_seq}; {signed}"


def _witness_keys(given: list[str]) -> list[Any]:
    """``NAME=PUBKEY`` values, or files holding such lines (one a line)."""
    from adapters.witness.cosignatures import witness_key

    lines: list[str] = []
    for g in given:
        path = Path(g)
        lines += [x.strip() for x in path.read_text().splitlines() if x.strip()] if path.is_file() else [g]
    try:
        pairs = [line.split("=", 1) for line in lines]
        return [witness_key(name, "", key) for name, key in pairs]
    except ValueError as exc:  # also a NAME=PUBKEY without "="
        typer.echo(f"--witness-key: {exc}; expected NAME=PUBKEY", err=True)
        raise typer.Exit(2) from None


def _reanchor_record(reason: str) -> Any:
    """The log's own record of a re-anchoring, signed into the checkpoint that follows it."""
    import getpass

    from gateway.core.types import AuditRecord, EventKind, Outcome

    return AuditRecord(time_us=now_us(), kind=EventKind.ADMIN, consumer="", service="gateway.audit/Reanchor",
                       purpose="", legal_basis="", legal_reference="", subject="", consent_id="", case_id="",
                       officer_id="", request_id="", trace_id="", fields=(), outcome=Outcome.OK, reason="",
                       latency_us=0, protocol="admin",
                       extra={"actor": f"cli:{getpass.getuser()}", "action": "reanchor", "result": "done",
                              "change_reason": reason})  # fmt: skip


def _read_trusted(source: str) -> str:
    """The signed checkpoint note held by ``source`` (file or URL; note text or JSON)."""
    try:
        if source.startswith(("http://", "https://")):
            import httpx

            answer = httpx.get(source, timeout=10.0)
            answer.raise_for_status()
            text = answer.text
        else:
            text = Path(source).read_text()
    except Exception as exc:  # any fetch or read error: say which source
        typer.echo(f"--trusted {source}: cannot read: {exc}", err=True)
        raise typer.Exit(2) from None
    if not text.lstrip().startswith("{"):
        return text
    doc = json.loads(text)
    for holder in (doc.get("latest"), doc.get("checkpoint"), doc):
        if isinstance(holder, dict) and (holder.get("cosignedNote") or holder.get("note")):
            return str(holder.get("cosignedNote") or holder["note"])
    typer.echo(f"--trusted {source}: no checkpoint note in this JSON", err=True)
    raise typer.Exit(2)


@audit_app.command()
def checkpoint(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = _DEFAULT_DIR,
    reanchor: Annotated[str, typer.Option("--reanchor", help="REASON. Only when the signer's state (what it last "
                                          "signed, kept outside the database) is lost or unreadable: sign the "
                                          "log as it is now and make that the new state. Recorded for good, in "
                                          "the state and in the log.")] = "",
) -> None:
    """Sign a checkpoint of the log now (the server also does this periodically).

    Refuses (exit 1) when the log does not extend what was signed before (its own state, the latest
    stored checkpoint, the witnesses' cosigned checkpoints), or when the signer's state is missing.
    """
    from adapters.stores.audit_checkpoints import SigningRefused
    from gateway.core.caller_text import free_text_problem

    conf = _config(config, data_dir)
    if reanchor and (not reanchor.strip() or free_text_problem(reanchor) is not None):
        typer.echo("--reanchor needs a reason: one line of at most 200 printable characters", err=True)
        raise typer.Exit(2)

    async def work(store: Any) -> Any:
        signer = _signer(conf, store)
        if reanchor:
            signer.refuse_reanchor()
            await store.append(_reanchor_record(reanchor.strip()))
        return await signer.checkpoint(reanchor=reanchor.strip()), await store.latest_checkpoint()

    try:
        made, latest = _with_store(conf, work)
    except SigningRefused as exc:
        typer.echo(f"REFUSED: {exc}", err=True)
        raise typer.Exit(1) from None
    if reanchor:
        typer.echo(f"RE-ANCHORED by hand (reason recorded): the signer now vouches for the log as it is, tree size "
                   f"{made.tree_size if made else '?'}; the witnesses still refuse anything that contradicts what "
                   "they cosigned", err=True)  # fmt: skip
    if made is None:
        size = latest.tree_size if latest else 0
        typer.echo(f"no new records since the latest checkpoint (tree size {size}); nothing signed")
        return
    typer.echo(f"signed checkpoint: tree size {made.tree_size}, root {made.root_hash.hex()}, key {made.key_id}")


@audit_app.command()
def prove(
    seq: Annotated[int, typer.Argument(metavar="SEQ", help="The record's sequence number (the access id).")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = _DEFAULT_DIR,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the proof here.")] = None,
) -> None:
    """Print an inclusion proof of record SEQ in the latest signed checkpoint, as JSON."""
    from adapters.stores.audit_checkpoints import make_proof
    from gateway.application.transparency import proof_message

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
    file: Annotated[Path, typer.Argument(
        metavar="FILE", help="A proof from gateway audit prove or GET /v1/me/accesses/ID/proof.")],
    public_key: Annotated[Path | None, typer.Option("--public-key", help="Pin the gateway key (PEM) instead of "
                                                    "trusting the one in the file.")] = None,
) -> None:
    """Check an inclusion proof offline: record hash, audit path, checkpoint signature (Ed25519 note)."""
    from adapters.stores.audit_signing import raw_public_key, verify_checkpoint
    from gateway._pb.passerelle.gateway.v1 import audit_pb2 as pb
    from gateway.core.audit_proof import PROOF_FORMAT, InclusionProof, check_proof
    from gateway.core.merkle import Checkpoint
    from gateway.core.signed_note import vkey

    message = pb.AccessProof()
    try:
        json_format.Parse(file.read_text(), message)
    except (OSError, json_format.ParseError, json.JSONDecodeError) as exc:
        typer.echo(f"{file}: not a proof: {exc}", err=True)
        raise typer.Exit(2) from None
    if message.format != PROOF_FORMAT:
        typer.echo(f"{file}: unknown proof format {message.format!r}", err=True)
        raise typer.Exit(2)
    try:
        key = raw_public_key(public_key.read_bytes() if public_key else message.public_key_pem.encode())
    except (TypeError, ValueError) as exc:
        typer.echo(f"not an Ed25519 public key: {exc}", err=True)
        raise typer.Exit(1) from None
    c = message.checkpoint
    cp = Checkpoint(c.tree_size, c.root_hash, c.time_us, c.signature, c.key_id, c.origin)
    try:
        path = tuple(bytes.fromhex(p) for p in message.audit_path)
    except ValueError:
        path = ()
    proof = InclusionProof(message.seq, message.record_hash, message.prev_hash, message.canonical, path, cp)
    problems = check_proof(proof, lambda payload, sig: verify_checkpoint(cp, key))
    if problems:
        for p in problems:
            typer.echo(f"INVALID: {p}")
        raise typer.Exit(1)
    typer.echo(f"OK: record {proof.seq} is in the checkpoint of tree size {cp.tree_size} signed at {c.time} "
               f"by key {vkey(cp.origin, key)}")  # fmt: skip


@audit_app.command()
def purge(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = _DEFAULT_DIR,
    older_than_days: Annotated[int | None, typer.Option("--older-than-days", help="Default: "
                                                        "[gateway] audit_retention_days.")] = None,
) -> None:
    """Delete records older than the retention; the rest stays verifiable (checkpoint first, then purge)."""
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


@audit_app.command()
def witness(
    gateway: Annotated[str, typer.Option("--gateway", help="The gateway's REST base URL.")],
    key: Annotated[Path, typer.Option("--key", help="This witness's Ed25519 private key (PKCS#8 PEM); "
                                      "created (mode 0600) if missing.")],
    state: Annotated[Path, typer.Option("--state", help="Folder for this witness's state (its own storage).")],
    port: Annotated[int, typer.Option("--port", help="Port to serve /checkpoint and /status on.")] = 8090,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    name: Annotated[str, typer.Option("--name", help="The witness's C2SP key name.")] = "witness.passerelle.demo/w1",
    log_key: Annotated[str, typer.Option("--log-key", help="The log's verifier key (vkey, from GET "
                                         "/v1/audit/checkpoints). Default: pinned on first contact.")] = "",
    poll_s: Annotated[float, typer.Option("--poll-s", min=0.05, help="Seconds between polls.")] = 10.0,
    init: Annotated[bool, typer.Option("--init", help="First start of a witness whose key exists: begin with an "
                                       "empty state. Without it, a missing or unreadable state is refused (a "
                                       "witness that forgot what it cosigned would cosign a fork).")] = False,
) -> None:
    """Run a witness: cosign the gateway's checkpoints that extend what it saw, refuse forks and rollbacks."""
    import os

    import uvicorn

    from adapters.keys.file_signer import FileNoteSigner, generate_ed25519_pem
    from gateway.entrypoints.witness import StateFile, Witness, witness_app

    if not key.exists():  # a new witness: its state starts with its key
        init = True
        key.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(generate_ed25519_pem())
    try:
        signer = FileNoteSigner.from_file(name, key, is_demo=False)
        w = Witness(gateway, signer, StateFile(state, signer), log_vkey=log_key, init=init)
    except (OSError, TypeError, ValueError) as exc:
        typer.echo(f"witness: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"witness {name} on http://{host}:{port}/checkpoint; its key: {w.vkey}", err=True)

    async def main() -> None:
        server = uvicorn.Server(uvicorn.Config(witness_app(w), host=host, port=port, log_level="warning"))
        poller = asyncio.create_task(w.run(poll_s))
        try:
            await server.serve()
        finally:
            poller.cancel()

    asyncio.run(main())
