"""The benchmark's arithmetic: refusals read from /metrics, ratios per gateway row, and what the table says."""

from __future__ import annotations

from typing import Any

from bench.__main__ import ratios
from bench.demo_gateway import parse_security_events
from bench.report import table

_METRICS = """\
# HELP passerelle_security_events_total Refusals before authentication
# TYPE passerelle_security_events_total counter
passerelle_security_events_total{protocol="rest",reason="TOKEN_MALFORMED"} 3.0
passerelle_security_events_total{protocol="grpc",reason="RATE_LIMITED"} 2374.0
passerelle_security_events_total{protocol="rest",reason="RATE_LIMITED"} 6.0
passerelle_exchanges_total{protocol="grpc",reason="RATE_LIMITED"} 99.0
"""


def _row(protocol: str, target: str, c: int, rps: int, **extra: Any) -> dict[str, Any]:
    return {"protocol": protocol, "target": target, "concurrency": c, "rps": rps, "p50_ms": 1.0, "p95_ms": 2.0,
            "p99_ms": 3.0, "errors": 0, "generator": "h2load", **extra}  # fmt: skip


def test_security_events_are_added_up_by_reason_across_protocols_and_other_series_are_ignored() -> None:
    assert parse_security_events(_METRICS) == {"TOKEN_MALFORMED": 3, "RATE_LIMITED": 2380}


def test_no_security_event_yet_reads_as_none() -> None:
    assert parse_security_events("# HELP passerelle_security_events_total x\n") == {}


def test_ratios_set_the_gateway_against_direct_nginx_and_proxy_in_throughput_and_cpu() -> None:
    rows = [_row("grpc", "direct", 1, 3000), _row("grpc", "nginx", 1, 2000, hop_cpu_us=75),
            _row("grpc", "proxy", 1, 1500, hop_cpu_us=300),
            _row("grpc", "gateway", 1, 600, hop_cpu_us=900, p50_ms=2.5, refused={})]  # fmt: skip
    [r] = ratios(rows)
    assert r == {"protocol": "grpc", "concurrency": 1, "target": "gateway", "gateway_over_direct": 0.2,
                 "gateway_over_nginx": 0.3, "gateway_over_proxy": 0.4, "cpu_gateway_over_nginx": 12.0,
                 "cpu_gateway_over_proxy": 3.0, "added_p50_ms": 1.5, "added_p99_ms": 0.0, "refused": 0}  # fmt: skip


def test_a_gateway_demo_row_with_refusals_is_rated_on_its_audited_ok_answers() -> None:
    rows = [_row("grpc", "direct", 32, 3000), _row("grpc", "proxy", 32, 2000, hop_cpu_us=300),
            _row("grpc", "gateway-demo", 32, 1400, hop_cpu_us=700, ok_rps=1000, hop_cpu_us_per_ok=990,
                 refused={"RATE_LIMITED": 2000})]  # fmt: skip
    [r] = ratios(rows)
    assert (r["target"], r["gateway_over_proxy"], r["cpu_gateway_over_proxy"]) == ("gateway-demo", 0.5, 3.3)
    assert r["gateway_over_nginx"] is None and r["cpu_gateway_over_nginx"] is None   # nginx not measured
    assert r["refused"] == 2000


def test_the_table_says_why_nginx_is_missing_and_counts_the_demo_refusals() -> None:
    rows = [_row("rest", "direct", 1, 5000), _row("rest", "gateway-demo", 1, 500, hop_cpu_us=1500,
                                                  refused={"RATE_LIMITED": 7})]  # fmt: skip
    quota = {"rate_per_s": 1000, "burst": 2000, "max_concurrent": 128}
    report = {"machine": {"cpu": "x", "cpus": 2, "kernel": "k", "python": "3", "grpcio": "1", "generators": {}},
              "rows": rows, "ratios": ratios(rows), "nginx": {"skipped": "nginx is not installed"},
              "gateway_demo": {"quota": quota, "refused": 7}}  # fmt: skip
    text = table(report)
    assert "nginx: skipped (nginx is not installed)" in text
    assert "refused answers in total: 7 (throughput ratios use the audited OK answers)" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if "gw/direct" in line)
    ratio = lines[header + 1].split()
    assert ratio[:5] == ["rest", "gateway-demo", "1", "0.1", "-"]   # gw/direct, then gw/nginx: not measured
    assert ratio[-1] == "7"
