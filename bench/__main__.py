"""The benchmark harness: ``python -m bench`` (or ``make bench``).

One run measures, side by side on loopback, the same lookup
(a) straight to the demo registry, (b) through the bare pass-through proxy
(``bench.proxy``), (c) through the full gateway, for gRPC (GetPerson, gRPC
registry) and REST (income certificate, REST dialect registry, consent-based),
at several concurrency levels; then the gateway with 2 workers, the added
latency at concurrency 1 and the added p99 at half the saturating load, token
verification with and without the cache, audit append and verify rates.
``--long`` instead checks that the gateway's memory stays flat over many exchanges; ``--bulk`` instead
compares one bulk call of ``--bulk-items`` person look-ups with as many single calls (``bench.bulk``).

Results: ``bench/results/bench-<time>.json`` and ``.txt`` (a short table).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.load import Call, Result, available_generators, run_load
from bench.report import table
from bench.stack import INCOME_YEAR, SEED, Proc, Stack, start_stack

RESULTS = Path(__file__).parent / "results"
GRPC_PATH = "/registry.population.v1.PopulationRegistry/GetPerson"


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    import os

    return {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "grpcio": metadata.version("grpcio"), "protobuf": metadata.version("protobuf"),
            "uvicorn": metadata.version("uvicorn"), "generators": available_generators()}  # fmt: skip


def calls(stack: Stack, protocol: str, target: str) -> Call:
    """The same lookup, addressed to the registry, the proxy or the gateway."""
    from gateway._pb.registry.population.v1 import population_pb2

    auth = (("authorization", f"Bearer {stack.token()}"), ("x-purpose", "student-aid"))
    if protocol == "grpc":
        body = population_pb2.GetPersonRequest(national_id=stack.nid).SerializeToString()
        port = {"direct": stack.grpc_registry, "proxy": stack.proxy_grpc, "gateway": stack.gateway_grpc}[target]
        return Call("grpc", port, GRPC_PATH, auth if target == "gateway" else (), body)
    dialect = f"/api/v2/attestations-revenu?matricule={stack.nid}&annee={INCOME_YEAR}"
    if target == "gateway":
        return Call("rest", stack.gateway_rest, f"/v1/tax/income-certificates/{stack.nid}/{INCOME_YEAR}", auth)
    return Call("rest", stack.tax_registry if target == "direct" else stack.proxy_rest, dialect)


def measure(stack: Stack, protocol: str, target: str, concurrency: int, args: argparse.Namespace,
            **load: Any) -> dict[str, Any]:  # fmt: skip
    call = calls(stack, protocol, target)
    hop: Proc | None = {"direct": None, "proxy": stack.proxy, "gateway": stack.gateway}[target]
    if args.warmup > 0:
        run_load(call, concurrency, args.warmup, 0, force_python=args.python_load, **load)
    audited = stack.audit_ok_count() if target == "gateway" else 0
    cpu = {p.name: p.cpu_s() for p in (stack.registries, hop) if p is not None}
    result: Result = run_load(call, concurrency, args.duration, 0, force_python=args.python_load, **load)
    used = {p.name: p.cpu_s() - cpu[p.name] for p in (stack.registries, hop) if p is not None}
    row: dict[str, Any] = {
        "protocol": protocol, "target": target, "concurrency": concurrency, "generator": result.generator,
        "requests": result.requests, "errors": result.errors, "rps": round(result.rps),
        "p50_ms": result.p50_ms, "p95_ms": result.p95_ms, "p99_ms": result.p99_ms,
        "registry_cpu_us": round(used["registries"] / max(result.requests, 1) * 1e6),
    }  # fmt: skip
    if hop is not None:
        row["hop_cpu_us"] = round(used[hop.name] / max(result.requests, 1) * 1e6)
        row["hop_peak_rss_mb"] = round(hop.rss_kb() / 1024, 1)
        row["hop_cpu_share"] = round(used[hop.name] / args.duration, 2)  # cores busy
    if target == "gateway":
        # h2load counts HTTP 200, and a gRPC refusal is an HTTP 200: count what the audit log says was served.
        row["audited_ok"] = stack.audit_ok_count() - audited
    return row


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["protocol"], r["target"], r["concurrency"]): r for r in rows}
    out = []
    for (protocol, target, c), r in by.items():
        if target != "gateway":
            continue
        a, b = by.get((protocol, "direct", c)), by.get((protocol, "proxy", c))
        out.append({
            "protocol": protocol, "concurrency": c,
            "gateway_over_proxy": round(r["rps"] / b["rps"], 2) if b and b["rps"] else None,
            "gateway_over_direct": round(r["rps"] / a["rps"], 2) if a and a["rps"] else None,
            "added_p50_ms": round(r["p50_ms"] - a["p50_ms"], 3) if a else None,
            "added_p99_ms": round(r["p99_ms"] - a["p99_ms"], 3) if a else None,
        })  # fmt: skip
    return out


def half_load(stack: Stack, rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Added p99 at half the gateway's saturating throughput (open loop: h2load --rps)."""
    import shutil

    if not shutil.which("h2load"):
        return [{"skipped": "needs h2load for a fixed request rate"}]
    out = []
    for protocol in args.protocols:
        peak = max(r["rps"] for r in rows if r["protocol"] == protocol and r["target"] == "gateway")
        rate = max(1, peak // 2)
        clients = 8
        measured = {}
        for target in ("direct", "gateway"):
            result = run_load(calls(stack, protocol, target), clients, args.duration, 0,
                              rps_per_client=max(1, rate // clients))  # fmt: skip
            measured[target] = result
        d, g = measured["direct"], measured["gateway"]
        out.append({"protocol": protocol, "offered_rps": rate, "gateway_rps": round(g.rps),
                    "direct_p99_ms": d.p99_ms, "gateway_p99_ms": g.p99_ms,
                    "added_p99_ms": round(g.p99_ms - d.p99_ms, 3), "generator": g.generator})  # fmt: skip
    return out


def scenarios(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    stack.start_proxy()
    stack.start_gateway(1)
    for protocol in args.protocols:
        for c in args.concurrency:
            for target in ("direct", "proxy", "gateway"):
                rows.append(measure(stack, protocol, target, c, args))
                print(_one_line(rows[-1]), file=sys.stderr, flush=True)
    result: dict[str, Any] = {"rows": rows, "ratios": ratios(rows), "half_load": half_load(stack, rows, args)}
    scale = []
    top = max(args.concurrency)
    for workers in args.workers:
        if workers == 1:
            scale += [{**r, "workers": 1} for r in rows if r["target"] == "gateway" and r["concurrency"] == top]
            continue
        stack.start_gateway(workers)
        for protocol in args.protocols:
            scale.append({**measure(stack, protocol, "gateway", top, args), "workers": workers})
            print(_one_line(scale[-1]), file=sys.stderr, flush=True)
    result["workers"] = scale
    return result


def _one_line(r: dict[str, Any]) -> str:
    return (f"{r['protocol']:<4} {r['target']:<7} c={r['concurrency']:<3} {r['rps']:>6} rps  p50 {r['p50_ms']} ms  "
            f"p99 {r['p99_ms']} ms  errors {r['errors']}  hop cpu {r.get('hop_cpu_us', '-')} us")  # fmt: skip


def long_run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Gateway memory over ``--long-total`` gRPC exchanges, sampled after each chunk."""
    stack.start_gateway(1)
    assert stack.gateway is not None
    call, done, points = calls(stack, "grpc", "gateway"), 0, []
    while done < args.long_total:
        r = run_load(call, 64, args.long_chunk_s, 0, force_python=args.python_load)
        done += r.requests
        points.append(
            {"exchanges": done, "rss_mb": round(stack.gateway.rss_kb("VmRSS") / 1024, 1), "rps": round(r.rps)}
        )
        print(f"long: {done} exchanges, RSS {points[-1]['rss_mb']} MB", file=sys.stderr, flush=True)
    base = next((p for p in points if p["exchanges"] >= min(100_000, args.long_total)), points[0])
    growth = (points[-1]["rss_mb"] - base["rss_mb"]) / base["rss_mb"]
    return {"points": points, "baseline": base, "final": points[-1], "growth": round(growth, 3),
            "audited_ok": stack.audit_ok_count()}  # fmt: skip


_DESCRIPTION = """\
Measure the same lookup straight to the demo registry, through a bare pass-through
proxy and through the full gateway, for gRPC and REST, at several concurrency levels;
then the gateway with several workers, the added latency, token verification, and
the audit log's append and verify rates. Results go to bench/results/."""


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench``: every option described."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add = parser.add_argument
    add("--duration", type=float, default=8.0, metavar="S", help="measured seconds per scenario (default: 8)")
    add("--warmup", type=float, default=2.0, metavar="S", help="unmeasured seconds before each scenario (default: 2)")
    add("--concurrency", type=_ints, default=[1, 16, 64], metavar="N,N,...",
        help="concurrent clients, one scenario each (default: 1,16,64)")
    add("--protocols", type=lambda s: s.split(","), default=["grpc", "rest"], metavar="grpc,rest",
        help="front doors to measure (default: grpc,rest)")
    add("--workers", type=_ints, default=[1, 2], metavar="N,N,...",
        help="gateway process counts to measure (default: 1,2)")
    add("--audit-records", type=int, default=50_000, metavar="N",
        help="records appended and verified in the audit-log rates (default: 50000)")
    add("--python-load", action="store_true", help="use the Python load generator even if h2load/wrk are installed")
    add("--long", action="store_true", help="only the memory-flatness run")
    add("--long-total", type=int, default=1_000_000, metavar="N",
        help="exchanges in the memory-flatness run (default: 1000000)")
    add("--long-chunk-s", type=float, default=20.0, metavar="S",
        help="seconds between two memory samples in that run (default: 20)")
    add("--bulk", action="store_true",
        help="only the bulk scenario: one bulk call vs single calls, both doors (see --bulk-items)")
    add("--bulk-items", type=int, default=10_000, metavar="N",
        help="person look-ups in that scenario, one bulk call vs N single calls (default: 10000)")
    add("--bulk-concurrency", type=int, default=32, metavar="N",
        help="concurrent single calls in that scenario (default: 32)")
    add("--persons", type=int, default=10_000, metavar="N", help="demo data set size (default: 10000)")
    return parser


def generated_code_problem() -> str:
    """'' when ``gateway._pb`` imports; else one line saying why and what to run.

    From a clone, ``python -m bench`` imports the clone's ``gateway/`` (the current folder comes first
    on ``sys.path``), and so do the processes it starts: after a plain ``pip install .`` that folder
    has no generated code (the installed wheel has it). With grpcio-tools at hand it is generated here,
    as ``make gen`` does.
    """
    import importlib.util

    if importlib.util.find_spec("gateway._pb") is not None:
        return ""
    import gateway

    folder = Path(gateway.__file__).parent
    if importlib.util.find_spec("grpc_tools") is not None:
        from gateway.codegen import generate

        generate()
        print(f"generated the protobuf code into {folder / '_pb'} (python -m gateway.codegen)", file=sys.stderr)
        return ""
    return (f"no generated code in {folder / '_pb'}: this clone's gateway/ shadows the installed package; run "
            "python -m gateway.codegen (pip install grpcio-tools) or make bench, or pip install -e . here")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if problem := generated_code_problem():
        print(problem, file=sys.stderr)
        return 2

    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
                              "settings": {k: v for k, v in vars(args).items()}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="passerelle-bench-") as tmp, start_stack(Path(tmp), args.persons) as stack:
        if args.long:
            report["long"] = long_run(stack, args)
        elif args.bulk:
            from bench import bulk
            from gateway.demo.data import generate

            ids = [p.national_id for p in generate(SEED, args.persons).persons][: args.bulk_items]
            report["bulk"] = bulk.run(stack, ids, args.bulk_concurrency, args.protocols)
        else:
            report |= scenarios(stack, args)
            stack.stop_gateway()
            from bench.micro import token_verification

            report["tokens"] = token_verification(stack.data_dir)
    if args.bulk:
        from bench import bulk

        RESULTS.mkdir(exist_ok=True)
        stem = RESULTS / f"bench-bulk-{time.strftime('%Y%m%d-%H%M%S')}"
        stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
        text = bulk.table(report["bulk"])
        stem.with_suffix(".txt").write_text(text)
        print(text)
        print(f"results: {stem}.json", file=sys.stderr)
        return 0
    if not args.long:
        from bench import audit_bench

        report["audit"] = audit_bench.run(args.audit_records)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"bench{'-long' if args.long else ''}-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    text = table(report)
    stem.with_suffix(".txt").write_text(text)
    print(text)
    print(f"results: {stem}.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
