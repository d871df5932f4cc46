"""gRPC server and client modes for unary calls, on one pass-through hop: ``python -m bench.grpc_modes``.

ADR 0001 chose ``grpc.aio`` (server and client on one uvloop loop); this measures the alternatives on the
bench's gRPC exchange (``PopulationRegistry/GetPerson`` to the demo registry, driven by h2load):

* ``aio-uvloop``: grpc.aio server and client on one uvloop loop (today's mode, ``bench.proxy``'s gRPC half);
* ``aio-asyncio``: the same on the default asyncio loop;
* ``sync-8``, ``sync-32``: ``grpc.server(ThreadPoolExecutor(N))`` and a blocking sync client call;
* ``*+work``: the same hops doing, around the call, what the gateway does in miniature
  (``Work``: a pure-Python CPU chunk of protobuf parsing, hashing and serialising, calibrated to about
  ``--work-us``; then a wait for a group commit of ``--commit-ms`` by a writer thread (``Committer``):
  awaited as a future on aio, a blocking wait on a pool thread).

Each hop is its own process (``--serve MODE``), all running side by side; every round measures each
mode at each concurrency, in an order rotated from round to round. Hop CPU per request is the
``utime + stime`` of the hop's process (all its threads) from /proc. Nothing is pinned to a CPU.

Results: ``bench/results/grpc-modes-<time>.json`` (every run, and medians with min and max) and ``.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import queue
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from gateway._pb.registry.population.v1 import population_pb2

__all__ = [
    "GRPC_PATH",
    "MODES",
    "Committer",
    "Mode",
    "Work",
    "calibrate",
    "check",
    "main",
    "start_aio_hop",
    "start_sync_hop",
]

RESULTS = Path(__file__).parent / "results"
GRPC_PATH = "/registry.population.v1.PopulationRegistry/GetPerson"
_TIMEOUT_S = 5.0  # h2load sends no grpc-timeout: the hop's own deadline for the registry call


@dataclass(frozen=True)
class Mode:
    """One way to run the hop: ``aio`` (on ``uvloop`` or not) or ``sync`` (a pool of ``threads``), with ``work``."""

    kind: str  # "aio" | "sync"
    uvloop: bool = False
    threads: int = 0
    work: bool = False


MODES = {
    "aio-uvloop": Mode("aio", uvloop=True),
    "aio-asyncio": Mode("aio"),
    "sync-8": Mode("sync", threads=8),
    "sync-32": Mode("sync", threads=32),
    "aio-uvloop+work": Mode("aio", uvloop=True, work=True),
    "sync-8+work": Mode("sync", threads=8, work=True),
    "sync-32+work": Mode("sync", threads=32, work=True),
}


class Work:
    """The gateway's CPU around a registry call, in miniature: ``rounds`` SHA-256 rounds in a Python loop.

    ``before(request bytes)`` parses the ``GetPersonRequest`` and hashes half the rounds; ``after(answer
    bytes)`` parses the ``Person``, hashes the other half and returns it serialised again. Both hold the GIL.
    """

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds

    def before(self, raw: bytes) -> None:
        request = population_pb2.GetPersonRequest.FromString(raw)
        self._spin(request.national_id.encode(), self.rounds // 2)

    def after(self, answer: bytes) -> bytes:
        person = population_pb2.Person.FromString(answer)
        self._spin(answer, self.rounds - self.rounds // 2)
        return person.SerializeToString()

    @staticmethod
    def _spin(data: bytes, rounds: int) -> bytes:
        digest = data
        for _ in range(rounds):
            digest = hashlib.sha256(digest).digest()
        return digest


def _cost_us(work: Work, request: bytes, answer: bytes, repeat: int = 300) -> float:
    """The fastest of ``repeat`` timings of ``before`` + ``after``, in µs (the fastest: least disturbed)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work.before(request)
        work.after(answer)
        best = min(best, time.perf_counter() - started)
    return best * 1e6


def calibrate(target_us: float, request: bytes, answer: bytes) -> tuple[int, float]:
    """The rounds for which ``Work`` costs about ``target_us`` here, and the µs it then measures."""
    base, probe = _cost_us(Work(0), request, answer), _cost_us(Work(400), request, answer)
    rounds = max(0, round((target_us - base) / max((probe - base) / 400, 1e-3)))
    return rounds, round(_cost_us(Work(rounds), request, answer), 1)


class Committer:
    """Group commit in miniature: one writer thread takes every waiting request, "commits" them all in one
    blocking wait of ``commit_s`` (``time.sleep``: like an fsync it releases the GIL), then wakes them.

    ``submit()`` (on an event loop) returns a future resolved from the writer thread, one wake-up per loop and
    batch like the audit writer's; ``wait()`` (on any thread) blocks until the commit, ``TimeoutError`` after
    ``timeout_s``. ``commits``: batches written; ``committed``: requests acknowledged.
    """

    def __init__(self, commit_s: float) -> None:
        self._commit_s = commit_s
        self._queue: queue.SimpleQueue[tuple[asyncio.Future[None] | None, threading.Event | None] | None] = (
            queue.SimpleQueue()
        )
        self.commits = 0
        self.committed = 0
        self._thread = threading.Thread(target=self._run, name="bench-committer", daemon=True)
        self._thread.start()

    def submit(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put((fut, None))
        return fut

    def wait(self, timeout_s: float = _TIMEOUT_S) -> None:
        done = threading.Event()
        self._queue.put((None, done))
        if not done.wait(timeout_s):
            raise TimeoutError("no commit")

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            batch = [item]
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(more)
            time.sleep(self._commit_s)
            self.commits += 1
            self.committed += len(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for fut, event in batch:
                if event is not None:
                    event.set()
                elif fut is not None:
                    by_loop.setdefault(fut.get_loop(), []).append(fut)
            for loop, futs in by_loop.items():
                loop.call_soon_threadsafe(_settle, futs)


def _settle(futs: list[asyncio.Future[None]]) -> None:
    for fut in futs:
        if not fut.done():
            fut.set_result(None)


def _timeout(remaining: float | None) -> float:
    """The registry call's timeout: the caller's time left, at most ``_TIMEOUT_S``.

    Without a caller deadline grpc.aio says ``None`` and the sync server about 9.2e18 s, which the sync
    client cannot take (the call ends at once with DEADLINE_EXCEEDED): both get ``_TIMEOUT_S``.
    """
    return _TIMEOUT_S if remaining is None else min(remaining, _TIMEOUT_S)


class _AioForward(grpc.GenericRpcHandler):
    """Every method: forward the request bytes on the aio channel, return the answer bytes (``Work`` around)."""

    def __init__(self, channel: grpc.aio.Channel, work: Work | None, committer: Committer | None) -> None:
        self._channel, self._work, self._committer = channel, work, committer
        self._handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
        handler = self._handlers.get(details.method)
        if handler is None:
            handler = self._handlers[details.method] = grpc.unary_unary_rpc_method_handler(self._handle(details.method))
        return handler

    def _handle(self, method: str) -> Callable[..., Any]:
        fn: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(method)
        work, committer = self._work, self._committer

        async def handle(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            if work is not None:
                work.before(raw)
            try:
                answer: bytes = await fn(raw, timeout=_timeout(context.time_remaining()))
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
                raise AssertionError("unreachable") from None
            if work is not None and committer is not None:
                answer = work.after(answer)
                await committer.submit()
            return answer

        return handle


class _SyncForward(grpc.GenericRpcHandler):
    """Every method: forward the request bytes with a blocking call on a pool thread (``Work`` around)."""

    def __init__(self, channel: grpc.Channel, work: Work | None, committer: Committer | None) -> None:
        self._channel, self._work, self._committer = channel, work, committer
        self._handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {}
        self._lock = threading.Lock()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
        handler = self._handlers.get(details.method)
        if handler is None:
            with self._lock:
                handler = self._handlers.get(details.method) or grpc.unary_unary_rpc_method_handler(
                    self._handle(details.method)
                )
                self._handlers[details.method] = handler
        return handler

    def _handle(self, method: str) -> Callable[..., Any]:
        fn: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(method)
        work, committer = self._work, self._committer

        def handle(raw: bytes, context: grpc.ServicerContext) -> bytes:
            if work is not None:
                work.before(raw)
            try:
                answer: bytes = fn(raw, timeout=_timeout(context.time_remaining()))
            except grpc.RpcError as exc:
                context.abort(exc.code(), exc.details() or "")
            if work is not None and committer is not None:
                answer = work.after(answer)
                committer.wait()
            return answer

        return handle


async def start_aio_hop(
    target: str, work: Work | None = None, committer: Committer | None = None
) -> tuple[grpc.aio.Server, grpc.aio.Channel, int]:
    """A started grpc.aio hop on 127.0.0.1 (free port) forwarding to ``target``: ``(server, channel, port)``."""
    channel = grpc.aio.insecure_channel(target)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([_AioForward(channel, work, committer)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, channel, port


def start_sync_hop(target: str, threads: int, work: Work | None = None,
                   committer: Committer | None = None) -> tuple[grpc.Server, grpc.Channel, int]:  # fmt: skip
    """A started thread-pool hop (``threads`` workers) on 127.0.0.1 forwarding to ``target``."""
    channel = grpc.insecure_channel(target)
    server = grpc.server(ThreadPoolExecutor(max_workers=threads))
    server.add_generic_rpc_handlers([_SyncForward(channel, work, committer)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, channel, port


async def _serve_aio(target: str, work: Work | None, committer: Committer | None) -> None:
    server, channel, port = await start_aio_hop(target, work, committer)
    print(f"READY port={port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)
    await channel.close()


def serve(mode: Mode, target: str, work_rounds: int, commit_ms: float) -> None:
    """Run one hop until SIGTERM; prints ``READY port=<port>`` once it accepts calls."""
    work = Work(work_rounds) if mode.work else None
    committer = Committer(commit_ms / 1000) if mode.work else None
    if mode.kind == "aio":
        if mode.uvloop:
            import uvloop

            uvloop.run(_serve_aio(target, work, committer))
        else:
            asyncio.run(_serve_aio(target, work, committer))
    else:
        server, channel, port = start_sync_hop(target, mode.threads, work, committer)
        print(f"READY port={port}", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        server.stop(1).wait()
        channel.close()
    if committer is not None:
        committer.stop()


def check(port: int, request: bytes, expected: bytes) -> None:
    """Call the hop on ``port`` as h2load does (no deadline); ``RuntimeError`` unless it answers ``expected``.

    h2load counts every HTTP 200 as a success, and a gRPC error is an HTTP 200: without this a hop
    answering errors would be measured as a fast one.
    """
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        get: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(GRPC_PATH)
        call = get.future(request)  # no timeout: no grpc-timeout header, like h2load's requests
        try:
            answer = call.result(timeout=_TIMEOUT_S * 2)
        except grpc.RpcError as exc:
            raise RuntimeError(f"the hop on port {port} answered {exc.code()}: {exc.details()}") from None
    if population_pb2.Person.FromString(answer) != population_pb2.Person.FromString(expected):
        raise RuntimeError(f"the hop on port {port} answered another person than the registry")


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": len(runs), "errors": sum(r["errors"] for r in runs)}
    for key in ("rps", "p50_ms", "p99_ms", "hop_cpu_us", "registry_cpu_us"):
        values = [r[key] for r in runs if key in r]
        if values:
            out[key] = {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Start the registries and every hop, then run the rounds; the report (``runs``, ``summary``)."""
    from bench.__main__ import machine
    from bench.load import Call, run_load
    from bench.stack import _spawn, start_stack

    with tempfile.TemporaryDirectory(prefix="passerelle-grpc-modes-") as tmp, start_stack(Path(tmp)) as stack:
        target = f"127.0.0.1:{stack.grpc_registry}"
        request = population_pb2.GetPersonRequest(national_id=stack.nid).SerializeToString()
        with grpc.insecure_channel(target) as channel:
            get: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(GRPC_PATH)
            answer = get(request, timeout=_TIMEOUT_S)
        rounds, work_us = calibrate(args.work_us, request, answer)
        hops, ports = {}, {"direct": stack.grpc_registry}
        try:
            for name in args.modes:
                hops[name], line = _spawn(name, [sys.executable, "-m", "bench.grpc_modes", "--serve", name,
                                                 "--target", target, "--work-rounds", str(rounds),
                                                 "--commit-ms", str(args.commit_ms)], Path(tmp), "READY")  # fmt: skip
                ports[name] = int(line.split("=")[1])
                check(ports[name], request, answer)
            runs: list[dict[str, Any]] = []
            names = ["direct", *args.modes]
            for n in range(args.rounds):
                order = names[n % len(names) :] + names[: n % len(names)]
                for concurrency in args.concurrency:
                    for name in order:
                        call = Call("grpc", ports[name], GRPC_PATH, (), request)
                        run_load(call, concurrency, args.warmup, 0)
                        procs = [("registry", stack.registries), *([("hop", hops[name])] if name in hops else [])]
                        cpu = {key: p.cpu_s() for key, p in procs}
                        result = run_load(call, concurrency, args.duration, 0)
                        used = {key: p.cpu_s() - cpu[key] for key, p in procs}
                        row = {"round": n, "mode": name, "concurrency": concurrency, "requests": result.requests,
                               "errors": result.errors, "rps": round(result.rps), "p50_ms": result.p50_ms,
                               "p99_ms": result.p99_ms}  # fmt: skip
                        for key, seconds in used.items():
                            row[f"{key}_cpu_us"] = round(seconds / max(result.requests, 1) * 1e6)
                        runs.append(row)
                        print(f"round {n} {name:<16} c={concurrency:<3} {row['rps']:>6} req/s p50 {row['p50_ms']} "
                              f"p99 {row['p99_ms']} hop {row.get('hop_cpu_us', '-')} µs", flush=True)  # fmt: skip
            for name in args.modes:  # still forwarding after the rounds
                check(ports[name], request, answer)
        finally:
            for proc in hops.values():
                proc.stop()
    summary = [{"mode": name, "concurrency": c, **_summary([r for r in runs if r["mode"] == name
                                                            and r["concurrency"] == c])}
               for c in args.concurrency for name in ["direct", *args.modes]]  # fmt: skip
    return {"started": args.started, "machine": machine(), "command": " ".join(["python -m bench.grpc_modes",
            *sys.argv[1:]]), "work": {"rounds": rounds, "cpu_us": work_us, "commit_ms": args.commit_ms},
            "settings": {"rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup},
            "summary": summary, "runs": runs}  # fmt: skip


def _cell(s: dict[str, Any], key: str) -> str:
    if key not in s:
        return "-"
    v = s[key]
    return f"{v['median']:g} [{v['min']:g}–{v['max']:g}]"


def table(report: dict[str, Any]) -> str:
    """Medians with [min–max] over the rounds, per mode and concurrency."""
    w = report["work"]
    lines = [f"work: {w['rounds']} SHA-256 rounds + protobuf parse/serialise = {w['cpu_us']} µs CPU, "
             f"commit wait {w['commit_ms']} ms (group commit); {report['settings']}",
             f"{'mode':<16} {'c':>3} {'req/s':>20} {'p50 ms':>22} {'p99 ms':>22} {'hop CPU µs/req':>18} "
             f"{'err':>4}"]  # fmt: skip
    for s in report["summary"]:
        lines.append(f"{s['mode']:<16} {s['concurrency']:>3} {_cell(s, 'rps'):>20} {_cell(s, 'p50_ms'):>22} "
                     f"{_cell(s, 'p99_ms'):>22} {_cell(s, 'hop_cpu_us'):>18} {s['errors']:>4}")  # fmt: skip
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_modes", description=__doc__.split("\n")[0])
    parser.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES),
                        help=f"comma-separated, of {', '.join(MODES)}")  # fmt: skip
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run")
    parser.add_argument("--work-us", type=float, default=150.0, help="the +work modes' CPU chunk, µs")
    parser.add_argument("--commit-ms", type=float, default=0.3, help="the +work modes' commit wait, ms")
    parser.add_argument("--serve", choices=list(MODES), help="(internal) run one hop until SIGTERM")
    parser.add_argument("--target", help="(with --serve) the registry, host:port")
    parser.add_argument("--work-rounds", type=int, default=0, help="(with --serve) Work's SHA-256 rounds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve:
        serve(MODES[args.serve], args.target, args.work_rounds, args.commit_ms)
        return 0
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        raise SystemExit(f"unknown modes {unknown}; known: {', '.join(MODES)}")
    args.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report = measure(args)
    text = table(report)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"grpc-modes-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    stem.with_suffix(".txt").write_text(text + "\n")
    print(text)
    print(f"results: {stem}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
