"""The report as one self-contained HTML page: inline CSS and SVG charts, no script, no external resource."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:64rem;
color:#1b1f24;padding:0 1rem;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #d0d7de}
.meta{color:#57606a}.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(11rem,1fr));gap:.8rem}
.kpi{border:1px solid #d0d7de;border-radius:.5rem;padding:.7rem}.kpi b{display:block;font-size:1.5rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:right;padding:.3rem .5rem;
border-bottom:1px solid #eaeef2}th:first-child,td:first-child{text-align:left}figure{margin:1rem 0}
figcaption{color:#57606a;font-size:.85rem}.up{color:#1a7f37}.down{color:#cf222e}
"""
_COLOURS = {"ok": "#2da44e", "refused": "#bf8700", "errors": "#cf222e", "p50": "#0969da", "p95": "#8250df"}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _num(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:,}".replace(",", "\u202f") if isinstance(value, int) else f"{value:g}"


def _bars(
    title: str, rows: Sequence[tuple[str, Sequence[tuple[str, float]]]], *, unit: str = "", stacked: bool = True
) -> str:
    """Horizontal bars, one row per label; each row has one or more (series, value) segments."""
    if not rows:
        return f"<figure><figcaption>{escape(title)}: no data</figcaption></figure>"
    label_w, bar_w, row_h = 240, 480, 26   # 30 characters of 12 px text fit in 234 px
    per_row = 1 if stacked else max(len(s) for _, s in rows)
    top = max((sum(v for _, v in s) if stacked else max((v for _, v in s), default=0)) for _, s in rows) or 1
    height = len(rows) * row_h * per_row + 30
    parts = [
        f'<svg role="img" aria-label="{escape(title)}" width="{label_w + bar_w + 90}" height="{height}" '
        f'viewBox="0 0 {label_w + bar_w + 90} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    y = 4
    for label, series in rows:
        shown = label if len(label) <= 30 else label[:29] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end" font-size="12">{escape(shown)}'
            f"<title>{escape(label)}</title></text>"
        )
        x: float = label_w
        for name, value in series:
            w = bar_w * value / top
            colour = _COLOURS.get(name, "#6e7781")
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y + 3}" width="{max(w, 0.5):.1f}" height="18" '
                f'fill="{colour}"><title>{escape(label)} · {escape(name)}: {_num(value)}{unit}</title></rect>'
            )
            if stacked:
                x += w
            else:
                parts.append(f'<text x="{x + w + 4:.1f}" y="{y + 16}" font-size="11">{_num(value)}{unit}</text>')
                y += row_h
        if stacked:
            total = sum(v for _, v in series)
            parts.append(f'<text x="{x + 4:.1f}" y="{y + 16}" font-size="11">{_num(total)}{unit}</text>')
            y += row_h
    legend_x = label_w
    for name in dict.fromkeys(n for _, s in rows for n, _ in s):
        parts.append(
            f'<rect x="{legend_x}" y="{height - 18}" width="10" height="10" fill="{_COLOURS.get(name, "#6e7781")}"/>'
            f'<text x="{legend_x + 14}" y="{height - 9}" font-size="11">{escape(name)}</text>'
        )
        legend_x += 90
    parts.append("</svg>")
    return f"<figure>{''.join(parts)}<figcaption>{escape(title)}</figcaption></figure>"


def _kpis(t: Mapping[str, Any]) -> str:
    items = [
        ("Exchanges", _num(t["exchanges"])),
        ("Evidence served once-only", _num(t["evidence_served"])),
        ("Digitalisation rate", _pct(t["digitalisation_rate"])),
        ("Refusal rate", _pct(t["refusal_rate"])),
        ("Registry availability", _pct(t["availability"])),
        ("Under consent", _pct(t["consent_share"])),
        ("Consent revocations", _num(t["consent_revocations"])),
        ("For AI / automated decisions", _num(t["ai_exchanges"])),
    ]
    return '<div class="kpis">' + "".join(f'<div class="kpi">{escape(k)}<b>{v}</b></div>' for k, v in items) + "</div>"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _trend_rows(trend: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    out = []
    for name, t in trend.items():
        rate = name.endswith(("rate", "share")) or name == "availability"
        fmt = _pct if rate else _num
        delta = t["delta"]
        shown = "–" if delta is None else (f"{delta * 100:+.1f} pt" if rate else f"{delta:+,}".replace(",", "\u202f"))
        out.append([name.replace("_", " "), fmt(t["current"]), fmt(t["previous"]), shown])
    return out


def render_html(report: Mapping[str, Any]) -> str:
    """The whole page; every text from the report is escaped."""
    period, consumers, providers = report["period"], report["consumers"], report["providers"]
    reasons: dict[str, int] = {}
    for c in consumers:
        for r, n in c["refusals_by_reason"].items():
            reasons[r] = reasons.get(r, 0) + n
    sections = [
        f"<h1>Interoperability report — {escape(report['gateway'])}</h1>",
        f'<p class="meta">Period {escape(period["from"])} to {escape(period["to"])} (end excluded); generated '
        f"{escape(report['generated_at'])}; schema {escape(report['schema'])}.</p>",
        _kpis(report["totals"]),
        "<h2>Exchanges per administration (consumer)</h2>",
        _bars(
            "Exchanges by outcome",
            [(c["id"], [("ok", c["ok"]), ("refused", c["refused"]), ("errors", c["errors"])]) for c in consumers],
        ),
        _bars(
            "Digitalisation rate: evidence served once-only ÷ (served + documents still asked of citizens)",
            [(c["id"], [("ok", round((c["digitalisation_rate"] or 0) * 100, 1))]) for c in consumers],
            unit=" %",
        ),
        _table(
            [
                "Consumer",
                "Exchanges",
                "Cases",
                "Evidence",
                "Manual docs",
                "Digitalisation",
                "Refusal rate",
                "Under consent",
                "Revocations",
                "AI exchanges",
                "Services",
                "Purposes",
            ],
            [
                [
                    c["id"],
                    _num(c["exchanges"]),
                    _num(c["distinct_cases"]),
                    _num(c["evidence_served"]),
                    _num(c["manual_documents"]),
                    _pct(c["digitalisation_rate"]),
                    _pct(c["refusal_rate"]),
                    _pct(c["consent_share"]),
                    _num(c["consent_revocations"]),
                    _num(c["ai_exchanges"]),
                    _num(c["distinct_services"]),
                    _num(c["distinct_purposes"]),
                ]
                for c in consumers
            ],
        ),
        "<h2>Refusals by reason</h2>",
        _bars(
            "Refused exchanges by reason",
            [(r, [("refused", n)]) for r, n in sorted(reasons.items(), key=lambda x: -x[1])],
        ),
        "<h2>Registries (providers)</h2>",
        _bars(
            "Latency p50 and p95 (ms, within 1 %)",
            [(p["id"], [("p50", p["latency_p50_ms"] or 0), ("p95", p["latency_p95_ms"] or 0)]) for p in providers],
            unit=" ms",
            stacked=False,
        ),
        _table(
            ["Provider", "Exchanges", "Registry calls", "Failures", "Availability", "p50 ms", "p95 ms"],
            [
                [
                    p["id"],
                    _num(p["exchanges"]),
                    _num(p["registry_calls"]),
                    _num(p["registry_failures"]),
                    _pct(p["availability"]),
                    _num(p["latency_p50_ms"]),
                    _num(p["latency_p95_ms"]),
                ]
                for p in providers
            ],
        ),
        "<h2>Legal bases</h2>",
        _bars("Exchanges by legal basis", [(b, [("ok", n)]) for b, n in report["totals"]["legal_bases"].items()]),
        "<h2>Trend against the previous period</h2>",
        f'<p class="meta">Previous period {escape(report["previous_period"]["from"])} to '
        f"{escape(report['previous_period']['to'])}.</p>",
        _table(["Indicator", "This period", "Previous", "Change"], _trend_rows(report["trend"])),
    ]
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Interoperability report '
        f'{escape(period["from"])} – {escape(period["to"])}</title><meta name="viewport" '
        f'content="width=device-width,initial-scale=1"><style>{_CSS}</style></head><body>'
        + "\n".join(sections)
        + "</body></html>\n"
    )
