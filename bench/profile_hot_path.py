"""Where the gateway's CPU goes per exchange: py-spy over the gateway process under load.

    .venv/bin/python -m bench.profile_hot_path --protocol grpc --seconds 12 --concurrency 32

Starts the benchmark stack (demo registries, the gateway with the benchmark's configuration),
drives the gateway with the same lookup as ``python -m bench`` (h2load for gRPC, wrk for REST,
the Python generator otherwise) and records the gateway process with ``py-spy record --format raw``
(all threads, or only GIL-holding samples with ``--gil``). Prints the hop's CPU per exchange and the
functions with the largest self and inclusive shares of the samples; the raw profile is kept under
``bench/results/`` for flame graphs (``flamegraph.pl``/speedscope read the raw format).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.__main__ import calls
from bench.load import run_load
from bench.stack import SEED, Stack, start_stack

RESULTS = Path(__file__).parent / "results"


def aggregate(raw: str, top: int) -> tuple[int, list[tuple[str, int, int]]]:
    """(total samples, [(function, self samples, inclusive samples)]) from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short(f) for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            incl[frame] += count
    names = {n for n, _ in own.most_common(top)} | {n for n, _ in incl.most_common(top)}
    rows = sorted(((n, own[n], incl[n]) for n in names), key=lambda r: (-r[1], -r[2]))
    return total, rows


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``; thread/process frames unchanged."""
    name, _, where = frame.partition(" (")
    if not where:
        return frame
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    return f"{name} ({'/'.join(parts[-2:])})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=("grpc", "rest"), default="grpc")
    ap.add_argument("--seconds", type=float, default=12)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--threads", action="store_true", help="one root frame per thread (py-spy --threads)")
    ap.add_argument("--native", action="store_true", help="native frames too (py-spy --native)")
    ap.add_argument("--bulk", type=int, default=0, metavar="N",
                    help="profile one bulk call of N person look-ups (on --protocol's door) instead of single calls")
    ap.add_argument("--no-profile", action="store_true", help="measure CPU per exchange only")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="with --bulk --no-profile: N bulk calls one after the other, each measured, then the "
                         "median (A/B of a change: the spread between calls on a shared machine is ± 5-8 %%)")
    args = ap.parse_args(argv)
    if not args.no_profile and shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        print("py-spy not found (pip install py-spy)", file=sys.stderr)
        return 2
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, start_stack(Path(tmp)) as stack:
        stack.start_gateway(1)
        assert stack.gateway is not None
        call = calls(stack, args.protocol, "gateway")
        if args.bulk:
            return _profile_bulk(stack, args, py_spy)
        run_load(call, args.concurrency, 3, 0)   # warm up
        raw_path = RESULTS / f"profile-{args.protocol}-{time.strftime('%Y%m%dT%H%M%S')}.txt"
        spy: subprocess.Popen[bytes] | None = None
        if not args.no_profile:
            cmd = [py_spy, "record", "-r", str(args.rate), "--format", "raw", "-o", str(raw_path),
                   "-d", str(round(args.seconds)), "-p", str(stack.gateway.pids[0]), "--nonblocking"]
            cmd += [f for f, on in (("--gil", args.gil), ("--threads", args.threads), ("--native", args.native)) if on]
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        cpu0 = stack.gateway.cpu_s()
        done: list[object] = []
        worker = threading.Thread(target=lambda: done.append(run_load(call, args.concurrency, args.seconds, 0)))
        worker.start()
        worker.join()
        used = stack.gateway.cpu_s() - cpu0
        result = done[0]
        requests = getattr(result, "requests", 0)
        errors = getattr(result, "errors", 0)
        print(f"{args.protocol} c={args.concurrency}: {requests / args.seconds:,.0f} req/s, errors {errors}, "
              f"gateway CPU {used / max(requests, 1) * 1e6:,.0f} µs/exchange ({used / args.seconds:.2f} cores)")
        if spy is not None:
            spy.wait(timeout=args.seconds + 30)
            _print_profile(raw_path, args)
    return 0


def _spy(args: argparse.Namespace, py_spy: str, pid: int, seconds: float, raw_path: Path) -> subprocess.Popen[bytes]:
    cmd = [py_spy, "record", "-r", str(args.rate), "--format", "raw", "-o", str(raw_path),
           "-d", str(max(1, round(seconds))), "-p", str(pid), "--nonblocking"]
    cmd += [f for f, on in (("--gil", args.gil), ("--threads", args.threads), ("--native", args.native)) if on]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _profile_bulk(stack: Stack, args: argparse.Namespace, py_spy: str) -> int:
    """One bulk call of ``args.bulk`` items, profiled for its first ``args.seconds``."""
    import asyncio

    from bench import bulk
    from gateway.demo.data import generate

    assert stack.gateway is not None
    data = generate(SEED, 10_000)
    ids = [p.national_id for p in data.persons][: args.bulk]
    auth = (("authorization", f"Bearer {stack.token()}"), ("x-purpose", "student-aid"), ("x-case-id", "bench-bulk"))
    port = stack.gateway_grpc if args.protocol == "grpc" else stack.gateway_rest
    run = bulk._bulk_grpc if args.protocol == "grpc" else bulk._bulk_rest
    asyncio.run(run(port, auth, ids[:500]))   # warm-up
    raw_path = RESULTS / f"profile-bulk-{args.protocol}-{time.strftime('%Y%m%dT%H%M%S')}.txt"
    spy = None if args.no_profile else _spy(args, py_spy, stack.gateway.pids[0], args.seconds, raw_path)
    per_item: list[float] = []
    for _ in range(args.repeat if args.no_profile else 1):
        cpu0, t0 = stack.gateway.cpu_s(), time.perf_counter()
        ok, errors = asyncio.run(run(port, auth, ids))
        wall, used = time.perf_counter() - t0, stack.gateway.cpu_s() - cpu0
        per_item.append(used / max(ok + errors, 1) * 1e6)
        print(f"bulk {args.protocol} {len(ids)} items: {len(ids) / wall:,.0f} items/s, ok {ok}, errors {errors}, "
              f"gateway CPU {per_item[-1]:,.0f} µs/item ({used / wall:.2f} cores)", flush=True)
    if len(per_item) > 1:
        print(f"median of {len(per_item)} calls: gateway CPU {statistics.median(per_item):,.0f} µs/item "
              f"(min {min(per_item):,.0f}, max {max(per_item):,.0f})")
    if spy is not None:
        spy.wait(timeout=args.seconds + 30)
        _print_profile(raw_path, args)
    return 0


def _print_profile(raw_path: Path, args: argparse.Namespace) -> None:
    total, rows = aggregate(raw_path.read_text(), args.top)
    print(f"py-spy: {total} samples ({'GIL only' if args.gil else 'all threads'}); raw: {raw_path}")
    print(f"{'self %':>7} {'incl %':>7}  function")
    for name, own, incl in rows:
        print(f"{own / max(total, 1) * 100:7.1f} {incl / max(total, 1) * 100:7.1f}  {name}")


if __name__ == "__main__":
    raise SystemExit(main())
