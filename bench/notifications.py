"""The change-notification benchmark (issue 17): ``python -m bench --notifications``.

Per outbox store (``--notification-stores sqlite,postgres``; PostgreSQL skipped, saying why, when no
server answers at ``PASSERELLE_BENCH_PG_DSN``, default the local trust-auth ``test`` database, in which a
throw-away database is created and dropped):

- the demo registries in their own process with a change log, one ``gateway serve`` of ``--workers N``
  processes (the demo configuration as shipped, demo mode for http webhooks on loopback; only the
  outbox store differs), and 10 webhook subscriptions of one agency (cedies, student-aid), each to its
  own loopback HTTP receiver (aiohttp, in a thread of this process) that verifies the Standard Webhooks
  signature before it answers 204;
- **throughput**: ``--notification-events`` changes, each of a different followed person (no order
  constraint between them), recorded at once; deliveries per second from the first change recorded to
  the last delivery received (so reading the stream is included), per gateway worker process, and as
  events per second (a delivery is one event to one subscriber); the gateway's CPU per delivery;
- **lag at half that rate**: changes recorded at half the measured event rate (open loop) for
  ``--notification-seconds``; lag = receipt at the subscriber minus the change's time in the register,
  p50/p99 over every delivery (it includes the demo register's 0.1 s polling of its change log).

Results: ``bench/results/notifications-<time>.json`` and ``.txt`` (a short table).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from aiohttp import web
from standardwebhooks import Webhook

from bench.stack import SEED, Stack, _spawn

__all__ = ["Receivers", "run", "table"]

SUBSCRIBERS = 10
EVENT_TYPE = "registry.population.v1.PersonChanged"
PG_DSN = os.environ.get("PASSERELLE_BENCH_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test")
_WAIT_S = 120.0   # the longest a phase waits for its deliveries


class Receivers:
    """``n`` webhook endpoints on 127.0.0.1 (one port each), served by aiohttp on a loop of their own.

    Each verifies the Standard Webhooks signature with its subscription's secret (``set_secret``) and
    answers 204, else 400 (``bad`` counts those); ``receipts`` holds (subscriber, event id, time.time()).
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.urls: list[str] = []
        self.receipts: list[tuple[int, str, float]] = []
        self.bad = 0
        self._hooks: list[Webhook | None] = [None] * n
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bench-receivers", daemon=True)
        self._runners: list[web.AppRunner] = []

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)

    async def _start(self) -> None:
        for i in range(self.n):
            app = web.Application()
            app.router.add_post("/hook", partial(self._handle, i))
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self._runners.append(runner)
            self.urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}/hook")

    def set_secret(self, i: int, secret: str) -> None:
        self._hooks[i] = Webhook(secret)

    async def _handle(self, i: int, request: web.Request) -> web.Response:
        body = await request.read()
        at = time.time()
        hook = self._hooks[i]
        try:
            if hook is None:
                raise ValueError("no secret yet")
            hook.verify(body, dict(request.headers))
        except Exception:
            self.bad += 1
            return web.Response(status=400)
        self.receipts.append((i, request.headers.get("webhook-id", ""), at))
        return web.Response(status=204)

    def delivered(self) -> set[tuple[int, str]]:
        return {(i, e) for i, e, _ in list(self.receipts)}

    def stop(self) -> None:
        async def stop() -> None:
            for runner in self._runners:
                await runner.cleanup()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _pg_problem() -> str:
    import psycopg

    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL at {PG_DSN!r}: {type(exc).__name__}"
    return ""


@contextlib.contextmanager
def _pg_database() -> Iterator[str]:
    """A throw-away database as a postgresql:// URL (the gateway picks PostgreSQL by the scheme)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = f"passerelle_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    p = {k: str(v) for k, v in conninfo_to_dict(PG_DSN).items()}
    user = quote(p.pop("user", ""), safe="")
    password = p.pop("password", None)
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    try:
        yield f"postgresql://{auth}{p.get('host', 'localhost')}:{p.get('port', '5432')}/{name}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


def _configure(data_dir: Path, store: str) -> None:
    """The demo configuration in demo mode (http webhooks to loopback), the outbox in ``store``."""
    from gateway.demo.setup import ensure_demo

    path = ensure_demo(data_dir)
    text = path.read_text()
    line = 'store = "sqlite:notifications.db"\n'
    assert line in text and "[gateway]\n" in text, "the demo configuration changed shape"
    text = text.replace("[gateway]\n", "[gateway]\ndemo = true\n", 1).replace(line, f'store = "{store}"\n', 1)
    path.write_text(text)


def _subscribe(stack: Stack, receivers: Receivers, nids: list[str]) -> None:
    headers = {"authorization": f"Bearer {stack.token()}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.gateway_rest}", timeout=60, headers=headers) as client:
        for i, url in enumerate(receivers.urls):
            r = client.post("/v1/subscriptions", json={"eventType": EVENT_TYPE, "purpose": "student-aid",
                                                       "delivery": "DELIVERY_MODE_WEBHOOK", "webhookUrl": url})
            r.raise_for_status()
            receivers.set_secret(i, str(r.json()["signingSecret"]))
            for start in range(0, len(nids), 1000):
                client.post(f"/v1/subscriptions/{r.json()['id']}/follows",
                            json={"nationalIds": nids[start:start + 1000]}).raise_for_status()  # fmt: skip


class _Changes:
    """Records demo changes (the register's change log), each to the next followed person in turn."""

    def __init__(self, path: Path, nids: list[str]) -> None:
        from gateway.demo.changes import ChangeLog

        self.log, self.nids, self.n = ChangeLog(path), nids, 0
        self.recorded_at: dict[str, float] = {}   # event id -> time the register recorded it

    def record(self) -> str:
        from gateway.demo._model import Address

        nid = self.nids[self.n % len(self.nids)]
        self.n += 1
        change = self.log.record(nid, Address(str(self.n % 200 + 1), "rue du Banc", "L-4000", "Esch", "Esch"),
                                 dt.date(2026, 12, 1))  # fmt: skip
        self.recorded_at[change.event_id] = change.recorded_us / 1e6
        return change.event_id

    def close(self) -> None:
        self.log.close()


def _wait(receivers: Receivers, wanted: set[tuple[int, str]], what: str) -> float:
    """Until every (subscriber, event) of ``wanted`` was received; the time of the last receipt."""
    deadline = time.monotonic() + _WAIT_S
    while not wanted <= receivers.delivered():
        if time.monotonic() > deadline:
            missing = len(wanted - receivers.delivered())
            raise RuntimeError(f"{what}: {missing} of {len(wanted)} deliveries missing after {_WAIT_S:.0f} s")
        time.sleep(0.02)
    return max(at for i, e, at in list(receivers.receipts) if (i, e) in wanted)


def _wanted(events: list[str]) -> set[tuple[int, str]]:
    return {(i, e) for e in events for i in range(SUBSCRIBERS)}


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def _runqueue_wait_s(pids: list[int]) -> float:
    """Seconds the threads of ``pids`` spent runnable but waiting for a CPU (/proc/PID/task/*/schedstat)."""
    total = 0
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(stat.read_text().split()[1])
    return total / 1e9


def _throughput(stack: Stack, receivers: Receivers, changes: _Changes, events: int, workers: int) -> dict[str, Any]:
    assert stack.gateway is not None
    pids = stack.gateway.pids
    cpu, waited = stack.gateway.cpu_s(), _runqueue_wait_s(pids)
    start = time.time()
    ids = [changes.record() for _ in range(events)]
    last = _wait(receivers, _wanted(ids), "throughput")
    used, waited = stack.gateway.cpu_s() - cpu, _runqueue_wait_s(pids) - waited
    deliveries = events * SUBSCRIBERS
    rate = deliveries / (last - start)
    return {"events": events, "deliveries": deliveries, "seconds": round(last - start, 2),
            "deliveries_per_s": round(rate, 1), "deliveries_per_s_per_worker": round(rate / workers, 1),
            "events_per_s": round(rate / SUBSCRIBERS, 1),
            "events_per_s_per_worker": round(rate / SUBSCRIBERS / workers, 1),
            "gateway_cpu_ms_per_delivery": round(used / deliveries * 1e3, 2),
            # the gateway's CPU use over the phase: well under 1 per worker means it waited (I/O, or a busy host)
            "gateway_cores_busy": round(used / (last - start), 2),
            # its threads' time runnable but not running (summed over threads): a busy host shows here
            "gateway_runqueue_wait_s": round(waited, 1),
            "deliveries_per_gateway_cpu_s": round(deliveries / used) if used else None}  # fmt: skip


def _half_rate(receivers: Receivers, changes: _Changes, events_per_s: float, seconds: float) -> dict[str, Any]:
    rate = max(events_per_s / 2, 0.5)
    ids: list[str] = []
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate) + 1 - len(ids)
        for _ in range(due):
            ids.append(changes.record())
        time.sleep(0.005)
    wanted = _wanted(ids)
    _wait(receivers, wanted, "half rate")
    first: dict[tuple[int, str], float] = {}
    for i, e, at in list(receivers.receipts):
        if (i, e) in wanted:
            first[(i, e)] = min(at, first.get((i, e), at))
    lags = [(at - changes.recorded_at[e]) * 1e3 for (_, e), at in first.items()]
    return {"offered_events_per_s": round(rate, 1), "events": len(ids), "deliveries": len(lags),
            "lag_p50_ms": round(_percentile(lags, 50), 1), "lag_p99_ms": round(_percentile(lags, 99), 1),
            "lag_max_ms": round(max(lags), 1)}  # fmt: skip


def _one_store(workdir: Path, store: str, target: str, args: Any) -> dict[str, Any]:
    from gateway.demo.data import generate

    workdir.mkdir(parents=True)
    data_dir = workdir / "gateway"
    _configure(data_dir, target)
    persons = generate(SEED, args.persons).persons
    nids = [p.national_id for p in persons[:max(args.notification_events, 100)]]
    changes_file = workdir / "changes.db"
    registries, line = _spawn("registries", [sys.executable, "-m", "gateway.demo.registries", "--seed", str(SEED),
                                             "--persons", str(args.persons), "--changes", str(changes_file)],
                              workdir, "READY")  # fmt: skip
    ports = dict(p.split("=") for p in line.split()[1:])
    stack = Stack(workdir, data_dir, registries, int(ports["grpc"]), int(ports["tax"]))
    receivers = Receivers(SUBSCRIBERS)
    changes: _Changes | None = None
    workers = args.notification_workers
    try:
        receivers.start()
        stack.start_gateway(workers)
        _subscribe(stack, receivers, nids)
        changes = _Changes(changes_file, nids)
        _wait(receivers, _wanted([changes.record() for _ in range(20)]), "warm-up")
        row: dict[str, Any] = {"store": store, "workers": workers, "subscribers": SUBSCRIBERS}
        row["throughput"] = _throughput(stack, receivers, changes, args.notification_events, workers)
        print(f"notifications {store}: {row['throughput']}", file=sys.stderr, flush=True)
        row["half_rate"] = _half_rate(receivers, changes, row["throughput"]["events_per_s"], args.notification_seconds)
        print(f"notifications {store}: {row['half_rate']}", file=sys.stderr, flush=True)
        total = len(receivers.receipts)
        row["duplicates"] = total - len(receivers.delivered())   # at least once: a redelivery shows here
        row["bad_signatures"] = receivers.bad
        return row
    finally:
        if changes is not None:
            changes.close()
        stack.stop()
        receivers.stop()


def run(workdir: Path, args: Any) -> dict[str, Any]:
    """Each store of ``args.notification_stores`` measured in turn; a store that cannot run says why."""
    rows: list[dict[str, Any]] = []
    for store in args.notification_stores:
        if store == "sqlite":
            rows.append(_one_store(workdir / store, store, "sqlite:notifications.db", args))
        elif store == "postgres":
            if problem := _pg_problem():
                print(f"notifications postgres: skipped ({problem})", file=sys.stderr, flush=True)
                rows.append({"store": store, "skipped": problem})
                continue
            with _pg_database() as url:
                rows.append(_one_store(workdir / store, store, url, args))
        else:
            raise ValueError(f"--notification-stores: {store!r} is not sqlite or postgres")
    return {"rows": rows, "subscribers": SUBSCRIBERS, "receivers": "aiohttp on 127.0.0.1, one port each, "
            "Standard Webhooks signature verified before 204", "lag": "receipt at the subscriber minus the "
            "change's time in the register (includes the demo register's 0.1 s polling)"}  # fmt: skip


def table(report: dict[str, Any]) -> str:
    head = (f"{'store':<9} {'workers':>7} {'deliv/s':>8} {'/worker':>8} {'events/s':>9} {'/worker':>8} "
            f"{'cpu ms/deliv':>12} {'cores':>5} {'at ev/s':>8} {'lag p50 ms':>10} {'lag p99 ms':>10} {'dup':>4} "
            f"{'bad sig':>7}")  # fmt: skip
    out = [f"change notifications to {report['subscribers']} webhook subscribers", head]
    for r in report["rows"]:
        if "skipped" in r:
            out.append(f"{r['store']:<9} skipped: {r['skipped']}")
            continue
        t, h = r["throughput"], r["half_rate"]
        out.append(f"{r['store']:<9} {r['workers']:>7} {t['deliveries_per_s']:>8} "
                   f"{t['deliveries_per_s_per_worker']:>8} {t['events_per_s']:>9} {t['events_per_s_per_worker']:>8} "
                   f"{t['gateway_cpu_ms_per_delivery']:>12} {t['gateway_cores_busy']:>5} "
                   f"{h['offered_events_per_s']:>8} {h['lag_p50_ms']:>10} "
                   f"{h['lag_p99_ms']:>10} {r['duplicates']:>4} {r['bad_signatures']:>7}")  # fmt: skip
    out.append("deliv/s: one event to one subscriber; events/s = deliv/s / subscribers; cores: the gateway's CPU "
               "use while delivering; lag at half the event rate")
    return "\n".join(out) + "\n"
