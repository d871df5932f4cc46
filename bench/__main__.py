"""The benchmark harness: ``python -m bench`` (or ``make bench``).

One run measures, side by side on loopback, the same lookup
(a) straight to the demo registry, (b) through nginx, a C pass-through proxy (``bench.nginx``;
skipped, saying why, where nginx is missing), (c) through the bare Python pass-through proxy
(``bench.proxy``), (d) through the full gateway with the bench's tuned configuration (quotas
lifted), for gRPC (GetPerson, gRPC registry) and REST (income certificate, REST dialect
registry, consent-based), at several concurrency levels; then the gateway with 2 workers,
the added latency at concurrency 1 and the added p99 at half the saturating load; then
(e) ``gateway serve --demo`` as shipped (``bench.demo_gateway``, target ``gateway-demo``,
its refusals counted); token verification with and without the cache, audit append and
verify rates. ``--quick`` keeps (a)-(e) at concurrency 1 and 32 only, in under two minutes.
``--long`` instead checks that the gateway's memory stays flat over many exchanges; ``--bulk`` instead
compares one bulk call of ``--bulk-items`` person look-ups with as many single calls (``bench.bulk``);
``--notifications`` instead measures change-notification delivery to 10 webhook subscribers (``bench.notifications``).

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
from bench.stack import INCOME_YEAR, SEED, Stack, start_stack

RESULTS = Path(__file__).parent / "results"
GRPC_PATH = "/registry.population.v1.PopulationRegistry/GetPerson"


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    import os

    from bench.nginx import nginx_problem, nginx_version

    return {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "grpcio": metadata.version("grpcio"), "protobuf": metadata.version("protobuf"),
            "uvicorn": metadata.version("uvicorn"), "generators": available_generators(),
            "nginx": nginx_problem() or nginx_version(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "otel_variables": sorted(k for k in os.environ if k.startswith("OTEL_"))}  # fmt: skip


GATEWAYS = ("gateway", "gateway-demo")   # the full gateway: tuned for the bench, and as `serve --demo` ships


def calls(stack: Stack, protocol: str, target: str) -> Call:
    """The same lookup, addressed to the registry, nginx, the proxy, the tuned gateway or ``serve --demo``."""
    from gateway._pb.registry.population.v1 import population_pb2

    token = stack.demo.token() if target == "gateway-demo" and stack.demo else stack.token()
    auth = (("authorization", f"Bearer {token}"), ("x-purpose", "student-aid"))
    if protocol == "grpc":
        body = population_pb2.GetPersonRequest(national_id=stack.nid).SerializeToString()
        return Call("grpc", _port(stack, protocol, target), GRPC_PATH, auth if target in GATEWAYS else (), body)
    if target in GATEWAYS:
        return Call("rest", _port(stack, protocol, target), f"/v1/tax/income-certificates/{stack.nid}/{INCOME_YEAR}",
                    auth)  # fmt: skip
    dialect = f"/api/v2/attestations-revenu?matricule={stack.nid}&annee={INCOME_YEAR}"
    return Call("rest", _port(stack, protocol, target), dialect)


def _port(stack: Stack, protocol: str, target: str) -> int:
    demo = stack.demo
    grpc, rest = {
        "direct": (stack.grpc_registry, stack.tax_registry), "nginx": (stack.nginx_grpc, stack.nginx_rest),
        "proxy": (stack.proxy_grpc, stack.proxy_rest), "gateway": (stack.gateway_grpc, stack.gateway_rest),
        "gateway-demo": (demo.grpc, demo.rest) if demo else (0, 0),
    }[target]  # fmt: skip
    return grpc if protocol == "grpc" else rest


def _hop(stack: Stack, target: str) -> Any:
    """The process(es) whose CPU is the hop's (None for ``direct``): a ``Proc`` or ``demo_gateway.Pids``."""
    return {"direct": None, "nginx": stack.nginx, "proxy": stack.proxy, "gateway": stack.gateway,
            "gateway-demo": stack.demo.proc if stack.demo else None}[target]  # fmt: skip


def measure(stack: Stack, protocol: str, target: str, concurrency: int, args: argparse.Namespace,
            **load: Any) -> dict[str, Any]:  # fmt: skip
    call = calls(stack, protocol, target)
    hop = _hop(stack, target)
    registries: Any = stack.demo.registries if target == "gateway-demo" and stack.demo else stack.registries
    if args.warmup > 0:
        run_load(call, concurrency, args.warmup, 0, force_python=args.python_load, **load)
    audit_ok = _audit_counter(stack, target)
    audited, refused = audit_ok(), _refusals(stack, target)
    procs = [("registries", registries), *([("hop", hop)] if hop is not None else [])]
    cpu = {key: p.cpu_s() for key, p in procs}
    result: Result = run_load(call, concurrency, args.duration, 0, force_python=args.python_load, **load)
    used = {key: p.cpu_s() - cpu[key] for key, p in procs}
    row: dict[str, Any] = {
        "protocol": protocol, "target": target, "concurrency": concurrency, "generator": result.generator,
        "requests": result.requests, "errors": result.errors, "rps": round(result.rps),
        "p50_ms": result.p50_ms, "p95_ms": result.p95_ms, "p99_ms": result.p99_ms,
        "registry_cpu_us": round(used["registries"] / max(result.requests, 1) * 1e6),
    }  # fmt: skip
    if hop is not None:
        row["hop_cpu_us"] = round(used["hop"] / max(result.requests, 1) * 1e6)
        row["hop_peak_rss_mb"] = round(hop.rss_kb() / 1024, 1)
        row["hop_cpu_share"] = round(used["hop"] / args.duration, 2)  # cores busy
    if target in GATEWAYS:
        # h2load counts HTTP 200, and a gRPC refusal is an HTTP 200: count what the audit log says was served,
        # and the quota and authentication refusals (security events, not audit records) the gateway counted.
        row["audited_ok"] = audit_ok() - audited
        after = _refusals(stack, target)
        if refused is not None and after is not None:
            row["refused"] = {k: n - refused.get(k, 0) for k, n in sorted(after.items()) if n - refused.get(k, 0)}
        if row.get("refused"):
            # The generator's count includes answers that were refusals (gRPC); the served ones are audited.
            row["ok_rps"] = round(row["audited_ok"] / result.duration_s) if result.duration_s else 0
            row["hop_cpu_us_per_ok"] = round(used["hop"] / max(row["audited_ok"], 1) * 1e6)
            row["note"] = ("refusals: rps, latencies and hop_cpu_us are per answer the generator counted (h2load "
                           "counts gRPC refusals as answers; wrk counts REST refusals as errors); ok_rps and "
                           "hop_cpu_us_per_ok are per audited OK exchange")  # fmt: skip
    return row


def _audit_counter(stack: Stack, target: str) -> Any:
    if target == "gateway-demo" and stack.demo is not None:
        return stack.demo.audit_ok_count
    return stack.audit_ok_count if target == "gateway" else (lambda: 0)


def _refusals(stack: Stack, target: str) -> dict[str, int] | None:
    """Security events by reason so far (quota and authentication refusals); None where not counted
    (a gateway of several workers: each answers /metrics for itself)."""
    from bench.demo_gateway import security_events

    if target == "gateway-demo" and stack.demo is not None:
        return stack.demo.security_events()
    if target == "gateway" and stack.gateway is not None and len(stack.gateway.pids) == 1:
        return security_events(stack.gateway_rest)
    return None


def _served_rps(row: dict[str, Any]) -> float:
    """Exchanges answered OK per second: the generator's count, or the audited one when some were refused."""
    return float(row.get("ok_rps", row["rps"]))


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per gateway row: throughput gateway ÷ direct, ÷ nginx, ÷ proxy; CPU per exchange gateway ÷ nginx, ÷ proxy;
    added p50 and p99 over direct (ms). A ratio whose other side was not measured is None."""
    by = {(r["protocol"], r["target"], r["concurrency"]): r for r in rows}
    out = []
    for (protocol, target, c), r in by.items():
        if target not in GATEWAYS:
            continue
        other = {t: by.get((protocol, t, c)) for t in ("direct", "nginx", "proxy")}
        a = other["direct"]
        entry: dict[str, Any] = {"protocol": protocol, "concurrency": c, "target": target}
        for t, o in other.items():
            entry[f"gateway_over_{t}"] = round(_served_rps(r) / o["rps"], 2) if o and o["rps"] else None
        for t in ("nginx", "proxy"):
            o = other[t]
            mine = r.get("hop_cpu_us_per_ok", r.get("hop_cpu_us"))
            entry[f"cpu_gateway_over_{t}"] = round(mine / o["hop_cpu_us"], 2) if o and o.get("hop_cpu_us") else None
        entry["added_p50_ms"] = round(r["p50_ms"] - a["p50_ms"], 3) if a else None
        entry["added_p99_ms"] = round(r["p99_ms"] - a["p99_ms"], 3) if a else None
        entry["refused"] = sum(r["refused"].values()) if "refused" in r else None   # None: not counted
        out.append(entry)
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
    stack.start_nginx()
    if stack.nginx_skipped:
        print(f"nginx: skipped ({stack.nginx_skipped})", file=sys.stderr, flush=True)
    stack.start_gateway(1)
    targets = ["direct", *(["nginx"] if stack.nginx else []), "proxy", "gateway"]
    for protocol in args.protocols:
        for c in args.concurrency:
            for target in targets:
                rows.append(measure(stack, protocol, target, c, args))
                print(_one_line(rows[-1]), file=sys.stderr, flush=True)
    result: dict[str, Any] = {"nginx": _nginx_description(stack)}
    if not args.quick:
        result["half_load"] = half_load(stack, rows, args)
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
    stack.stop_gateway()
    if not args.no_demo:
        result["gateway_demo"] = demo_scenarios(stack, args, rows)
    result["rows"], result["ratios"] = rows, ratios(rows)
    return result


def demo_scenarios(stack: Stack, args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``gateway serve --demo`` as shipped (``bench.demo_gateway``): its rows are appended to ``rows``."""
    import tomllib

    from bench import demo_gateway

    stack.demo = demo_gateway.start_demo_gateway(stack.workdir, stack.nid, args.persons)
    try:
        for protocol in args.protocols:
            for c in args.demo_concurrency or args.concurrency:
                rows.append(measure(stack, protocol, "gateway-demo", c, args))
                print(_one_line(rows[-1]), file=sys.stderr, flush=True)
    finally:
        stack.demo.stop()
    conf = tomllib.loads((stack.demo.data_dir / "gateway.toml").read_text())["gateway"]
    return {
        "command": "gateway serve --demo --data-dir DIR --rest-port P --grpc-port Q --persons N",
        "quota": {k: conf.get(k) for k in ("rate_per_s", "burst", "max_concurrent")},
        "differences_from_tuned": demo_gateway.DIFFERENCES,
        "baseline": "ratios compare with the direct, nginx and proxy rows, measured against the bench's registries "
                    "(same program, seed and data set size as the registries serve --demo starts)",
        "refused": sum(sum(r.get("refused", {}).values()) for r in rows if r["target"] == "gateway-demo"),
    }


def _nginx_description(stack: Stack) -> dict[str, Any]:
    if stack.nginx is None:
        return {"skipped": stack.nginx_skipped or "not started"}
    from bench.nginx import nginx_version

    return {"version": nginx_version(), "worker_processes": 1,
            "passes": {"grpc": "grpc_pass (h2c)", "rest": "proxy_pass (HTTP/1.1, keepalive upstream)"}}  # fmt: skip


def _one_line(r: dict[str, Any]) -> str:
    refused = f"  refused {r['refused']}" if r.get("refused") else ""
    return (f"{r['protocol']:<4} {r['target']:<12} c={r['concurrency']:<3} {r['rps']:>6} rps  p50 {r['p50_ms']} ms  "
            f"p99 {r['p99_ms']} ms  errors {r['errors']}  hop cpu {r.get('hop_cpu_us', '-')} us{refused}")  # fmt: skip


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


#: What --quick changes, unless the option is given explicitly.
_QUICK: dict[str, Any] = {"duration": 3.0, "warmup": 1.0, "concurrency": [1, 32], "workers": [1]}


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
    add("--bulk-rounds", type=int, default=1, metavar="N",
        help="in the bulk scenario, alternate single calls and the bulk call N times per door and add a row of "
             "the medians (default: 1)")
    add("--bulk-memory", type=_ints, default=None, metavar="N,N,...",
        help="only the bulk memory check: one bulk call of each size (subjects cycled) on each door, the "
             "gateway's resident set before and at its peak (e.g. 1000,10000,100000)")
    add("--quick", action="store_true",
        help="the ratio table in under two minutes: direct, nginx, proxy, gateway and gateway-demo, both doors, "
             f"{_QUICK['duration']:g} s each after {_QUICK['warmup']:g} s of warm-up, concurrency 1,32, one worker; "
             "no half load, tokens or audit rates (options given explicitly still apply)")
    add("--no-demo", action="store_true",
        help="leave out the gateway-demo rows (gateway serve --demo as shipped, quotas on)")
    add("--demo-concurrency", type=_ints, default=None, metavar="N,N,...",
        help="concurrency of the gateway-demo rows (default: as --concurrency)")
    add("--persons", type=int, default=10_000, metavar="N", help="demo data set size (default: 10000)")
    add("--notifications", action="store_true",
        help="only the change-notification scenario (bench.notifications): deliveries per second per gateway "
             "worker to 10 webhook subscribers, then the delivery lag p50/p99 at half that rate")
    add("--notification-stores", type=lambda s: s.split(","), default=["sqlite", "postgres"],
        metavar="sqlite,postgres", help="outbox stores to measure (default: sqlite,postgres; postgres is skipped, "
                                        "saying why, without a server at PASSERELLE_BENCH_PG_DSN)")
    add("--notification-events", type=int, default=400, metavar="N",
        help="changes (of as many persons) recorded at once for the throughput (default: 400)")
    add("--notification-seconds", type=float, default=10.0, metavar="S",
        help="seconds of changes at half the event rate for the lag (default: 10)")
    add("--notification-workers", type=int, default=1, metavar="N", help="gateway worker processes (default: 1)")
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
    if args.quick:
        for key, value in _QUICK.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    if problem := generated_code_problem():
        print(problem, file=sys.stderr)
        return 2

    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
                              "settings": {k: v for k, v in vars(args).items()}}  # fmt: skip
    if args.notifications:
        from bench import notifications

        with tempfile.TemporaryDirectory(prefix="passerelle-bench-") as tmp:
            report["notifications"] = notifications.run(Path(tmp), args)
        RESULTS.mkdir(exist_ok=True)
        stem = RESULTS / f"notifications-{time.strftime('%Y%m%d-%H%M%S')}"
        stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
        text = notifications.table(report["notifications"])
        stem.with_suffix(".txt").write_text(text)
        print(text)
        print(f"results: {stem}.json", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="passerelle-bench-") as tmp, start_stack(Path(tmp), args.persons) as stack:
        if args.long:
            report["long"] = long_run(stack, args)
        elif args.bulk_memory:
            from bench import bulk
            from gateway.demo.data import generate

            ids = [p.national_id for p in generate(SEED, args.persons).persons]
            report["bulk_memory"] = bulk.memory(stack, ids, args.bulk_memory, args.protocols)
        elif args.bulk:
            from bench import bulk
            from gateway.demo.data import generate

            ids = [p.national_id for p in generate(SEED, args.persons).persons][: args.bulk_items]
            report["bulk"] = bulk.run(stack, ids, args.bulk_concurrency, args.protocols, args.bulk_rounds)
        else:
            report |= scenarios(stack, args)
            stack.stop_gateway()
            if not args.quick:
                from bench.micro import token_verification

                report["tokens"] = token_verification(stack.data_dir)
    if args.bulk or args.bulk_memory:
        from bench import bulk

        RESULTS.mkdir(exist_ok=True)
        kind = "bulk-memory" if args.bulk_memory else "bulk"
        stem = RESULTS / f"bench-{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
        stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
        text = bulk.memory_table(report["bulk_memory"]) if args.bulk_memory else bulk.table(report["bulk"])
        stem.with_suffix(".txt").write_text(text)
        print(text)
        print(f"results: {stem}.json", file=sys.stderr)
        return 0
    if not args.long and not args.quick:
        from bench import audit_bench

        report["audit"] = audit_bench.run(args.audit_records)
    RESULTS.mkdir(exist_ok=True)
    kind = "-long" if args.long else "-quick" if args.quick else ""
    stem = RESULTS / f"bench{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    text = table(report)
    stem.with_suffix(".txt").write_text(text)
    print(text)
    print(f"results: {stem}.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
