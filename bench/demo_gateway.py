"""The gateway as a user runs it: ``gateway serve --demo``, the configuration as shipped (target ``gateway-demo``).

The benchmark's own gateway (target ``gateway``, ``bench.stack``) runs a tuned copy of the demo
configuration. This one runs the real command on a data folder of its own::

    python -m gateway.entrypoints.cli serve --demo --data-dir DIR --rest-port P --grpc-port Q --persons N

Differences from the tuned gateway, all on the tuned side (``Stack._config``), none here:

* quotas: the demo's per-consumer ``rate_per_s = 1000``, ``burst = 2000``, ``max_concurrent = 128``
  stay in force here; the tuned gateway lifts them (``0``: off);
* log level: the default (``INFO``) here, as a user's terminal gets it; ``PASSERELLE_LOG_LEVEL=WARNING``
  for the tuned gateway;
* ``[gateway] demo`` (the demo-only routes, citizen sign-in on ``/me/``) is on here, as ``--demo`` sets it;
* registries: ``serve --demo`` starts its own demo registries (same program, seed and data set size)
  as its child; the tuned gateway is pointed at the bench's registries.

Everything else (audit store and its durability, consents, revocations, telemetry with whatever
``OTEL_*`` variables the environment has, address limits, keys) is the shipped file as ``ensure_demo``
writes it, which is what ``serve --demo`` itself calls. As for the tuned gateway, the bench grants
one standing consent first (the REST exchange is consent-based) and mints demo tokens.

Refusals are counted, not hidden: quota refusals are security events, not audit records, so each
scenario reads ``passerelle_security_events`` from ``/metrics`` before and after (``refusals``).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.stack import Proc, _children, _cmdline, _cpu_s, _grant_consent, _kb, _spawn, free_port
from gateway.demo.setup import demo_token, ensure_demo

__all__ = ["DIFFERENCES", "DemoGateway", "Pids", "parse_security_events", "security_events", "start_demo_gateway"]

#: What the tuned gateway (target ``gateway``) changes, as the JSON results state it.
DIFFERENCES = (
    "quotas: as shipped rate_per_s = 1000, burst = 2000, max_concurrent = 128 per consumer; tuned: 0 (off)",
    "log level: as shipped the default INFO; tuned: PASSERELLE_LOG_LEVEL=WARNING",
    "[gateway] demo (demo-only routes, citizen sign-in on /me/): as shipped on (--demo); tuned: off (--config)",
    "registries: as shipped serve --demo starts its own (same program, seed, persons); tuned: the bench's",
)

_REGISTRIES_LINE = re.compile(r"demo registries: gRPC 127\.0\.0\.1:(\d+), tax REST http://127\.0\.0\.1:(\d+)")
_EVENT = re.compile(r'^passerelle_security_events[a-z_]*\{([^}]*)\}\s+([0-9.eE+-]+)\s*$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Pids:
    """Processes the bench did not start itself (``serve --demo``'s registries): CPU and memory by pid."""

    name: str
    pid_list: tuple[int, ...]

    @property
    def pids(self) -> list[int]:
        return list(self.pid_list)

    def cpu_s(self) -> float:
        return _cpu_s(self.pids)

    def rss_kb(self, key: str = "VmHWM") -> int:
        return _kb(self.pids, key)


def parse_security_events(text: str) -> dict[str, int]:
    """Security events by reason (all protocols added), from a Prometheus text exposition."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = _EVENT.match(line)
        if m is None:
            continue
        labels = dict(_LABEL.findall(m.group(1)))
        reason = labels.get("reason", "")
        out[reason] = out.get(reason, 0) + round(float(m.group(2)))
    return out


def security_events(rest_port: int) -> dict[str, int]:
    """Security events by reason so far, from ``/metrics`` of the gateway process serving ``rest_port``
    (one worker: with several, each answers for itself)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/metrics", timeout=10) as answer:
        return parse_security_events(answer.read().decode())


@dataclass
class DemoGateway:
    """A running ``gateway serve --demo``: its process, data folder, ports and its own registries."""

    proc: Proc
    data_dir: Path
    grpc: int
    rest: int
    registries: Pids

    def token(self) -> str:
        return demo_token(self.data_dir, issuer_id="demo-agencies", subject="cedies", scope="exchange")

    def audit_ok_count(self) -> int:
        with contextlib.closing(sqlite3.connect(self.data_dir / "audit.db", timeout=30)) as db:
            return int(db.execute("SELECT COUNT(*) FROM audit_log WHERE outcome = 'ok'").fetchone()[0])

    def security_events(self) -> dict[str, int]:
        """The gateway's refusals before the pipeline (quotas, authentication ...) so far, by reason."""
        return security_events(self.rest)

    def stop(self) -> None:
        self.proc.stop()   # serve --demo stops its registries as it exits


def start_demo_gateway(workdir: Path, nid: str, persons: int) -> DemoGateway:
    """``gateway serve --demo`` on a fresh data folder under ``workdir``, with one standing consent for ``nid``."""
    data_dir = workdir / "gateway-demo"
    ensure_demo(data_dir)   # what serve --demo writes on first start; it keeps an existing file as it is
    _grant_consent(data_dir, nid)
    grpc, rest = free_port(), free_port()
    cmd = [sys.executable, "-m", "gateway.entrypoints.cli", "serve", "--demo", "--data-dir", str(data_dir),
           "--rest-port", str(rest), "--grpc-port", str(grpc), "--persons", str(persons)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PASSERELLE_LOG_LEVEL"}   # the default level, as shipped
    proc, _ = _spawn("gateway-demo", cmd, workdir, "Passerelle ready: ", env=env)
    m = _REGISTRIES_LINE.search(proc.log.read_text())
    children = [c for c in _children(proc.popen.pid) if "gateway.demo.registries" in _cmdline(c)]
    if m is None or not children:
        proc.stop()
        raise RuntimeError(f"gateway serve --demo: no demo registries found; see {proc.log}")
    return DemoGateway(proc, data_dir, grpc, rest, Pids("registries", tuple(children)))
