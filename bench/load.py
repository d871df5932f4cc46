"""Load generators: h2load (gRPC over HTTP/2) and wrk (HTTP/1.1) when installed, else Python.

A Python client spends about as much CPU per call as the server it measures, so
C generators are preferred; the fallback runs several client processes
(``bench.pyload``). Every result says which generator produced it.

Each run is time-bounded: ``warmup_s`` unmeasured, then ``duration_s`` measured.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["Call", "Result", "available_generators", "run_load"]

_ROOT = Path(__file__).resolve().parent.parent   # `python -m bench.pyload` from any folder


@dataclass(frozen=True)
class Call:
    """One request, as both kinds of generator need it."""

    protocol: str  # "grpc" | "rest"
    port: int
    path: str  # gRPC: "/pkg.Service/Method"; REST: "/path?query"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""  # gRPC: the serialised request message


@dataclass(frozen=True)
class Result:
    generator: str
    requests: int
    errors: int
    duration_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def available_generators() -> dict[str, str]:
    """Which generator each protocol will use here."""
    return {"grpc": "h2load" if shutil.which("h2load") else "python",
            "rest": "wrk" if shutil.which("wrk") else "python"}  # fmt: skip


def run_load(
    call: Call,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    *,
    force_python: bool = False,
    rps_per_client: int | None = None,
) -> Result:
    """Closed loop (each client sends again once answered), or open loop at ``rps_per_client`` (h2load)."""
    if rps_per_client is not None:
        return _h2load(call, concurrency, duration_s, warmup_s, rps_per_client)
    gen = "python" if force_python else available_generators()[call.protocol]
    if gen == "h2load":
        return _h2load(call, concurrency, duration_s, warmup_s)
    if gen == "wrk":
        return _wrk(call, concurrency, duration_s, warmup_s)
    return _python(call, concurrency, duration_s, warmup_s)


def _last_json_line(out: str, err: str) -> dict[str, Any]:
    """The client's result: its last stdout line that is a JSON object; else say what it printed instead."""
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                return json.loads(line)  # type: ignore[no-any-return]
    raise RuntimeError(f"python load client gave no result: {(out + err).strip()[-2000:]}")


def _percentiles(latencies_ms: list[float]) -> tuple[float, float, float]:
    if not latencies_ms:
        return 0.0, 0.0, 0.0
    q = statistics.quantiles(latencies_ms, n=100, method="inclusive")
    return round(q[49], 3), round(q[94], 3), round(q[98], 3)


def _h2load(call: Call, concurrency: int, duration_s: float, warmup_s: float, rps: int | None = None) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        body, log = Path(tmp) / "body", Path(tmp) / "log"
        cmd = ["h2load", "-c", str(concurrency), "-m", "1", "-t", "1", "-D", str(max(1, round(duration_s))),
               f"--log-file={log}"]  # fmt: skip
        if warmup_s > 0:
            cmd.append(f"--warm-up-time={max(1, round(warmup_s))}")
        if rps is not None:
            cmd.append(f"--rps={rps}")
        if call.protocol == "grpc":
            body.write_bytes(b"\x00" + struct.pack(">I", len(call.body)) + call.body)  # one gRPC frame
            cmd += ["-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers"]
        else:
            cmd.append("--h1")
        for k, v in call.headers:
            cmd += ["-H", f"{k}: {v}"]
        cmd.append(f"http://127.0.0.1:{call.port}{call.path}")
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + warmup_s + 60).stdout
        rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    latencies = [int(r[2]) / 1000 for r in rows if r[1] == "200"]
    errors = len(rows) - len(latencies)
    p50, p95, p99 = _percentiles(latencies)
    return Result("h2load", len(latencies), errors, duration_s, p50, p95, p99) if rows else _failed("h2load", out)


def _failed(gen: str, out: str) -> NoReturn:
    raise RuntimeError(f"{gen} produced no requests:\n{out[-2000:]}")


_WRK_SCRIPT = """
wrk.method = "GET"
{headers}
done = function(summary, latency, requests)
  io.write(string.format('BENCH {{"requests": %d, "non2xx": %d, "socket_errors": %d, "duration_us": %d,'
    .. ' "p50_us": %d, "p95_us": %d, "p99_us": %d}}\\n',
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def _wrk(call: Call, concurrency: int, duration_s: float, warmup_s: float) -> Result:
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in call.headers)
    url = f"http://127.0.0.1:{call.port}{call.path}"
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_WRK_SCRIPT.format(headers=headers))
        script.flush()
        if warmup_s > 0:
            subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(warmup_s))}s", "-s", script.name,
                            url], capture_output=True, timeout=warmup_s + 60)  # fmt: skip
        out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration_s))}s", "--timeout",
                              "10s", "-s", script.name, url], capture_output=True, text=True,
                             timeout=duration_s + 60).stdout  # fmt: skip
    line = next((x for x in out.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        _failed("wrk", out)
    f = json.loads(line.removeprefix("BENCH "))
    errors = f["non2xx"] + f["socket_errors"]
    return Result("wrk", f["requests"] - f["non2xx"], errors, f["duration_us"] / 1e6,
                  f["p50_us"] / 1000, f["p95_us"] / 1000, f["p99_us"] / 1000)  # fmt: skip


def _python(call: Call, concurrency: int, duration_s: float, warmup_s: float) -> Result:
    """Split the concurrency over up to 4 client processes (``python -m bench.pyload``)."""
    procs_n = max(1, min(4, concurrency))
    spec = json.dumps({"protocol": call.protocol, "port": call.port, "path": call.path,
                       "headers": list(call.headers), "body": call.body.hex()})  # fmt: skip
    procs = []
    for i in range(procs_n):
        share = concurrency // procs_n + (1 if i < concurrency % procs_n else 0)
        procs.append(subprocess.Popen([sys.executable, "-m", "bench.pyload", spec, str(share), str(duration_s),
                                       str(warmup_s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      cwd=_ROOT))  # fmt: skip
    latencies: list[float] = []
    errors = 0
    for p in procs:
        out, err = p.communicate(timeout=duration_s + warmup_s + 60)
        f = _last_json_line(out, err)
        latencies += f["latencies_ms"]
        errors += f["errors"]
    p50, p95, p99 = _percentiles(latencies)
    return Result(f"python x{procs_n}", len(latencies), errors, duration_s, p50, p95, p99)
