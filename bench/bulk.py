"""The bulk scenario (issue 16): N person look-ups as one bulk call vs N single calls at concurrency C,
on both doors, against the same gateway process.

Both sides use the same Python asyncio client in this process (grpc.aio, aiohttp), so the comparison is
like for like; the single calls' client cost is part of what a bulk call saves. The gateway's resident
set is sampled every 20 ms during each bulk call (``VmRSS``); its peak is reported beside ``VmHWM``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import statistics
import sys
import threading
import time
from typing import Any

import aiohttp
import grpc

from bench.stack import Proc, Stack

#: What the errors counted in the rows were (kind -> count), for the person reading a run with errors.
ERRORS: collections.Counter[str] = collections.Counter()
GET_PERSON = "registry.population.v1.PopulationRegistry/GetPerson"
BULK_GRPC = "/passerelle.gateway.v1.BulkExchange/Lookup"


class _RssSampler:
    """The peak of a process's VmRSS while the ``with`` block runs."""

    def __init__(self, proc: Proc, every_s: float = 0.02) -> None:
        self.proc, self.every_s, self.peak_kb = proc, every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, self.proc.rss_kb("VmRSS"))
            self._stop.wait(self.every_s)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, self.proc.rss_kb("VmRSS"))


async def _single_grpc(port: int, auth: tuple[tuple[str, str], ...], ids: list[str], c: int) -> tuple[int, int]:
    from gateway._pb.registry.population.v1 import population_pb2

    ok = errors = 0
    queue = iter(ids)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        fn = channel.unary_unary(f"/{GET_PERSON}", request_serializer=population_pb2.GetPersonRequest.SerializeToString,
                                 response_deserializer=population_pb2.Person.FromString)  # fmt: skip

        async def worker() -> None:
            nonlocal ok, errors
            for nid in queue:
                try:
                    await fn(population_pb2.GetPersonRequest(national_id=nid), metadata=auth, timeout=30)
                    ok += 1
                except grpc.aio.AioRpcError as exc:
                    errors += 1
                    ERRORS[f"single grpc {exc.code().name}: {(exc.details() or '')[:120]}"] += 1

        await asyncio.gather(*(worker() for _ in range(c)))
    return ok, errors


async def _single_rest(port: int, auth: tuple[tuple[str, str], ...], ids: list[str], c: int) -> tuple[int, int]:
    ok = errors = 0
    queue = iter(ids)
    connector = aiohttp.TCPConnector(limit=c)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=dict(auth), connector=connector) as session:

        async def worker() -> None:
            nonlocal ok, errors
            for nid in queue:
                async with session.get(f"/v1/population/persons/{nid}") as r:
                    await r.read()
                    if r.status == 200:
                        ok += 1
                    else:
                        errors += 1
                        ERRORS[f"single rest {r.status} {_reason(await r.read())}"] += 1

        await asyncio.gather(*(worker() for _ in range(c)))
    return ok, errors


async def _bulk_grpc(port: int, auth: tuple[tuple[str, str], ...], ids: list[str]) -> tuple[int, int]:
    from google.protobuf import any_pb2

    from gateway._pb.passerelle.gateway.v1 import bulk_pb2
    from gateway._pb.registry.population.v1 import population_pb2

    items = []
    for nid in ids:
        item = any_pb2.Any()
        item.Pack(population_pb2.GetPersonRequest(national_id=nid))
        items.append(item)
    request = bulk_pb2.BulkLookupRequest(method=GET_PERSON, items=items)
    ok = errors = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_stream(BULK_GRPC, request_serializer=bulk_pb2.BulkLookupRequest.SerializeToString,
                                    response_deserializer=bulk_pb2.BulkLookupAnswers.FromString)  # fmt: skip
        async for group in call(request, metadata=auth, timeout=600):
            for answer in group.items:
                if answer.status.code == 0:
                    ok += 1
                else:
                    errors += 1
                    ERRORS[f"bulk grpc {answer.status.code} {answer.status.message[:80]}"] += 1
    return ok, errors


async def _bulk_rest(port: int, auth: tuple[tuple[str, str], ...], ids: list[str]) -> tuple[int, int]:
    body = {"method": GET_PERSON, "items": [{"nationalId": n} for n in ids]}
    ok = errors = 0
    timeout = aiohttp.ClientTimeout(total=600)
    url = f"http://127.0.0.1:{port}/v1/bulk:lookup"
    async with aiohttp.ClientSession(headers=dict(auth), timeout=timeout) as session, session.post(url, json=body) as r:
        if r.status != 200:
            raise RuntimeError(f"bulk call refused: {r.status} {(await r.text())[:500]}")
        async for raw in r.content:
            if not raw.strip():
                continue
            line = json.loads(raw)
            if "index" in line and line.get("status", {}).get("code", 0) == 0:
                ok += 1
            else:
                ERRORS[f"bulk rest {str(line.get('status'))[:120]}"] += 1
                errors += 1
    return ok, errors


def _reason(body: bytes) -> str:
    try:
        problem = json.loads(body)
        return f"{problem.get('reason', '')}: {problem.get('detail', '')}"[:160]
    except (ValueError, AttributeError):
        return body[:60].decode(errors="replace")


def _timed(coro: Any) -> tuple[float, tuple[int, int]]:
    start = time.perf_counter()
    result = asyncio.run(coro)
    return time.perf_counter() - start, result


def _cpu(stack: Stack) -> tuple[float, float, float]:
    """CPU seconds so far of the gateway, the demo registries and this process (the client)."""
    assert stack.gateway is not None
    return stack.gateway.cpu_s(), stack.registries.cpu_s(), time.process_time()


_PROCESSES = ("gateway", "registries", "client")


def _per_item_us(before: tuple[float, float, float], after: tuple[float, float, float], items: int) -> list[int]:
    return [round((a - b) / items * 1e6) for a, b in zip(after, before, strict=True)]


def run(stack: Stack, ids: list[str], concurrency: int, protocols: list[str], rounds: int = 1) -> list[dict[str, Any]]:
    """Per door, ``rounds`` times: single calls at ``concurrency``, then one bulk call, same items — a row
    each; with several rounds, a last row per door of the medians (single and bulk items/s, and the ratio).
    Alternating the two in one run is what makes their ratio worth reading on a machine whose speed drifts."""
    stack.start_gateway(1)
    assert stack.gateway is not None
    auth = (("authorization", f"Bearer {stack.token()}"), ("x-purpose", "student-aid"), ("x-case-id", "bench-bulk"))
    rows = []
    for protocol in protocols:
        door_rows = []
        for round_no in range(1, rounds + 1):
            row = _round(stack, protocol, ids, concurrency, auth)
            row["round"] = round_no
            door_rows.append(row)
        rows += door_rows
        if rounds > 1:
            median = {"protocol": protocol, "items": len(ids), "concurrency": concurrency, "round": "median",
                      "single_items_per_s": round(statistics.median(r["single_items_per_s"] for r in door_rows)),
                      "bulk_items_per_s": round(statistics.median(r["bulk_items_per_s"] for r in door_rows)),
                      "bulk_over_single": round(statistics.median(r["bulk_over_single"] for r in door_rows), 2),
                      "bulk_over_single_min": min(r["bulk_over_single"] for r in door_rows),
                      "bulk_over_single_max": max(r["bulk_over_single"] for r in door_rows)}  # fmt: skip
            rows.append(median)
            print(f"{protocol:<4} median of {rounds} rounds: bulk/single {median['bulk_over_single']:.2f}x "
                  f"({median['bulk_over_single_min']:.2f}-{median['bulk_over_single_max']:.2f})",
                  file=sys.stderr, flush=True)
    stack.stop_gateway()
    return rows


def _round(stack: Stack, protocol: str, ids: list[str], concurrency: int,
           auth: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    assert stack.gateway is not None
    port = stack.gateway_grpc if protocol == "grpc" else stack.gateway_rest
    single = _single_grpc if protocol == "grpc" else _single_rest
    bulk = _bulk_grpc if protocol == "grpc" else _bulk_rest
    _timed(single(port, auth, ids[:500], concurrency))   # warm-up: connections, caches, JIT-free paths
    cpu0 = _cpu(stack)
    single_s, (single_ok, single_err) = _timed(single(port, auth, ids, concurrency))
    cpu1 = _cpu(stack)
    rss_before = stack.gateway.rss_kb("VmRSS")
    with _RssSampler(stack.gateway) as rss:
        bulk_s, (bulk_ok, bulk_err) = _timed(bulk(port, auth, ids))
    cpu2 = _cpu(stack)
    single_cpu, bulk_cpu = _per_item_us(cpu0, cpu1, len(ids)), _per_item_us(cpu1, cpu2, len(ids))
    single_ips, bulk_ips = len(ids) / single_s, len(ids) / bulk_s
    row = {"protocol": protocol, "items": len(ids), "concurrency": concurrency,
           "single_s": round(single_s, 2), "single_items_per_s": round(single_ips), "single_ok": single_ok,
           "single_errors": single_err, "bulk_s": round(bulk_s, 2), "bulk_items_per_s": round(bulk_ips),
           "bulk_ok": bulk_ok, "bulk_errors": bulk_err, "bulk_over_single": round(bulk_ips / single_ips, 2),
           "gateway_rss_before_bulk_mb": round(rss_before / 1024, 1),
           "gateway_peak_rss_during_bulk_mb": round(rss.peak_kb / 1024, 1),
           "gateway_vmhwm_mb": round(stack.gateway.rss_kb() / 1024, 1),
           # CPU µs per item of the gateway, the demo registries and the client, single calls vs bulk
           "single_cpu_us_per_item": dict(zip(_PROCESSES, single_cpu, strict=True)),
           "bulk_cpu_us_per_item": dict(zip(_PROCESSES, bulk_cpu, strict=True))}  # fmt: skip
    if ERRORS:
        row["error_kinds"] = dict(ERRORS)
        print(f"errors: {dict(ERRORS)}", file=sys.stderr, flush=True)
        ERRORS.clear()
    print(one_line(row), file=sys.stderr, flush=True)
    return row


def memory(stack: Stack, ids: list[str], sizes: list[int], protocols: list[str]) -> list[dict[str, Any]]:
    """One bulk call per size (the subjects cycled to reach it) on each door: the gateway's resident set
    before the call and at its peak during it (sampled every 20 ms), with the items per second."""
    stack.start_gateway(1)
    assert stack.gateway is not None
    auth = (("authorization", f"Bearer {stack.token()}"), ("x-purpose", "student-aid"), ("x-case-id", "bench-bulk"))
    rows = []
    for protocol in protocols:
        port = stack.gateway_grpc if protocol == "grpc" else stack.gateway_rest
        bulk = _bulk_grpc if protocol == "grpc" else _bulk_rest
        _timed(bulk(port, auth, ids[:500]))   # warm-up
        for size in sizes:
            items = [ids[i % len(ids)] for i in range(size)]
            before = stack.gateway.rss_kb("VmRSS")
            with _RssSampler(stack.gateway) as rss:
                seconds, (ok, errors) = _timed(bulk(port, auth, items))
            row = {"protocol": protocol, "items": size, "ok": ok, "errors": errors,
                   "items_per_s": round(size / seconds), "rss_before_mb": round(before / 1024, 1),
                   "rss_peak_mb": round(rss.peak_kb / 1024, 1),
                   "rss_growth_mb": round((rss.peak_kb - before) / 1024, 1)}  # fmt: skip
            if ERRORS:
                row["error_kinds"] = dict(ERRORS)
                ERRORS.clear()
            rows.append(row)
            print(f"{protocol:<4} {size:>7} items: {row['items_per_s']:>6} items/s, RSS {row['rss_before_mb']} → "
                  f"{row['rss_peak_mb']} MB (+{row['rss_growth_mb']}), errors {errors}", file=sys.stderr, flush=True)
    stack.stop_gateway()
    return rows


def memory_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| door | items in one bulk call | items/s | gateway RSS before → peak during the call | growth |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['protocol']} | {r['items']:,} | {r['items_per_s']:,} | {r['rss_before_mb']} → "
                     f"{r['rss_peak_mb']} MB | +{r['rss_growth_mb']} MB |")
    return "\n".join(lines) + "\n"


def one_line(r: dict[str, Any]) -> str:
    return (f"{r['protocol']:<4} {r['items']} items: single c={r['concurrency']} {r['single_items_per_s']:>6} items/s  "
            f"bulk {r['bulk_items_per_s']:>6} items/s  bulk/single {r['bulk_over_single']:.2f}x  "
            f"peak RSS in bulk {r['gateway_peak_rss_during_bulk_mb']} MB "
            f"(before {r['gateway_rss_before_bulk_mb']} MB)  "
            f"errors {r['single_errors']}/{r['bulk_errors']}  "
            f"CPU µs/item gateway/registries/client single {_cpu_text(r, 'single')} "
            f"bulk {_cpu_text(r, 'bulk')}")  # fmt: skip


def _cpu_text(r: dict[str, Any], mode: str, sep: str = "/") -> str:
    cpu = r.get(f"{mode}_cpu_us_per_item") or {}
    return sep.join(str(cpu.get(k, "-")) for k in _PROCESSES)


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| door | items | single calls (c={c}) items/s | one bulk call items/s | bulk ÷ single "
            "| gateway RSS before → peak during bulk | errors single / bulk "
            "| CPU µs per item, single: gateway / registries / client | same, bulk |")
    lines = [head.format(c=rows[0]["concurrency"] if rows else "-"), "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("round") == "median":
            lines.append(f"| {r['protocol']} median | {r['items']:,} | {r['single_items_per_s']:,} "
                         f"| {r['bulk_items_per_s']:,} | **{r['bulk_over_single']:.2f}×** "
                         f"({r['bulk_over_single_min']:.2f}–{r['bulk_over_single_max']:.2f}) | | | | |")
            continue
        lines.append(f"| {r['protocol']} | {r['items']:,} | {r['single_items_per_s']:,} | {r['bulk_items_per_s']:,} "
                     f"| {r['bulk_over_single']:.2f}× | {r['gateway_rss_before_bulk_mb']} → "
                     f"{r['gateway_peak_rss_during_bulk_mb']} MB "
                     f"| {r['single_errors']} / {r['bulk_errors']} "
                     f"| {_cpu_text(r, 'single', ' / ')} | {_cpu_text(r, 'bulk', ' / ')} |")  # fmt: skip
    return "\n".join(lines) + "\n"
