"""The short table printed at the end of a run (the JSON holds everything)."""

from __future__ import annotations

from typing import Any

__all__ = ["table"]


def _rows(report: dict[str, Any]) -> list[str]:
    out = [
        f"{'proto':<5} {'target':<12} {'conc':>4} {'rps':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'hop cpu us':>10} {'rss MB':>7} {'errors':>6} {'refused':>7}  generator"
    ]
    for r in report.get("rows", []):
        refused = sum(r.get("refused", {}).values()) if "refused" in r else "-"
        out.append(
            f"{r['protocol']:<5} {r['target']:<12} {r['concurrency']:>4} {r['rps']:>7} {r['p50_ms']:>7} "
            f"{r['p95_ms']:>7} {r['p99_ms']:>7} {r.get('hop_cpu_us', '-'):>10} "
            f"{r.get('hop_peak_rss_mb', '-'):>7} {r['errors']:>6} {refused!s:>7}  {r['generator']}"
        )
    return out


def _ratio_rows(report: dict[str, Any]) -> list[str]:
    """Throughput gateway ÷ other hop (higher is better), CPU per exchange gateway ÷ other hop (lower is better)."""
    out = [
        f"{'proto':<5} {'target':<12} {'conc':>4} {'gw/direct':>9} {'gw/nginx':>8} {'gw/proxy':>8} "
        f"{'cpu gw÷nginx':>12} {'cpu gw÷proxy':>12} {'+p50 ms':>8} {'+p99 ms':>8} {'refused':>7}"
    ]
    for r in report.get("ratios", []):
        v = {k: "-" if x is None else str(x) for k, x in r.items()}   # None: the other side was not measured
        out.append(
            f"{r['protocol']:<5} {r.get('target', 'gateway'):<12} {r['concurrency']:>4} "
            f"{v['gateway_over_direct']:>9} {v.get('gateway_over_nginx', '-'):>8} {v['gateway_over_proxy']:>8} "
            f"{v.get('cpu_gateway_over_nginx', '-'):>12} {v.get('cpu_gateway_over_proxy', '-'):>12} "
            f"{v['added_p50_ms']:>8} {v['added_p99_ms']:>8} {v.get('refused', '0'):>7}"
        )
    return out


def _notes(report: dict[str, Any]) -> list[str]:
    out = []
    nginx = report.get("nginx", {})
    if "skipped" in nginx:
        out.append(f"nginx: skipped ({nginx['skipped']})")
    demo = report.get("gateway_demo")
    if demo:
        q = demo["quota"]
        out.append(
            f"gateway-demo: gateway serve --demo as shipped (quota {q['rate_per_s']}/s, burst {q['burst']}, "
            f"max_concurrent {q['max_concurrent']} per consumer; log level INFO); refused answers in total: "
            f"{demo['refused']}" + (" (throughput ratios use the audited OK answers)" if demo["refused"] else "")
            + "; its ratios compare with the direct, nginx and proxy rows (the bench's registries: same program, "
            "seed and size)"
        )
    return out


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cpus']} CPUs, Linux {m['kernel']}, Python {m['python']}, "
        f"grpcio {m['grpcio']}; load: {m['generators']}",
        "",
    ]
    if "long" in report:
        lg = report["long"]
        lines.append(
            f"memory: {lg['baseline']['rss_mb']} MB at {lg['baseline']['exchanges']} exchanges -> "
            f"{lg['final']['rss_mb']} MB at {lg['final']['exchanges']} ({lg['growth']:+.1%})"
        )
        return "\n".join(lines) + "\n"
    lines += _rows(report)
    lines += ["", *_ratio_rows(report), *_notes(report), ""]
    for h in report.get("half_load", []):
        if "skipped" in h:
            lines.append(f"half load: {h['skipped']}")
            continue
        lines.append(
            f"half load {h['protocol']}: {h['offered_rps']} rps offered, gateway p99 {h['gateway_p99_ms']} ms, "
            f"direct p99 {h['direct_p99_ms']} ms, added p99 {h['added_p99_ms']} ms"
        )
    for w in report.get("workers", []):
        lines.append(
            f"workers={w['workers']} {w['protocol']} c={w['concurrency']}: {w['rps']} rps, "
            f"p99 {w['p99_ms']} ms, hop cpu {w.get('hop_cpu_us')} us"
        )
    t = report.get("tokens")
    if t:
        lines.append(
            f"tokens ({t['algorithm']}): cached {t['cached']['per_s']}/s ({t['cached']['us_each']} us), "
            f"uncached {t['uncached']['per_s']}/s ({t['uncached']['us_each']} us)"
        )
    a = report.get("audit")
    if a:
        for store in ("sqlite", "postgres"):
            f = a[store]
            if isinstance(f, str):
                lines.append(f"audit {store}: {f}")
            else:
                lines.append(
                    f"audit {store}: append {f['appends_per_s']}/s (p99 {f['p99_ms']} ms, {f['commits']} "
                    f"commits), verify {f['verify_per_s']}/s, read+verify {f['read_and_verify_per_s']}/s"
                )
    return "\n".join(lines) + "\n"
