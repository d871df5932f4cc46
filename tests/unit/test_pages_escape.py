"""Pages escape HTML: the interoperability report, the citizen page's script, and the citizen's CSV copy."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from gateway.application.transparency import _export_body
from gateway.core.export_safety import FORMULA_STARTS
from gateway.core.transparency import AccessEntry
from observability.report import ExchangeRow, Period, ReportBuilder, build_report
from observability.report_html import render_html

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
FORMULA = '=HYPERLINK("http://e.vil/?x","Click to keep your benefits")'
DAY_US = 86_400_000_000
WEB = Path(__file__).resolve().parents[2] / "gateway" / "entrypoints" / "web"


def _builder(rows: list[ExchangeRow]) -> ReportBuilder:
    b = ReportBuilder({HOSTILE: HOSTILE})
    for row in rows:
        b.add(row)
    return b


def test_the_html_report_escapes_hostile_consumer_names_and_reasons() -> None:
    row = ExchangeRow(DAY_US, HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE, "refused", HOSTILE, 1000, HOSTILE)
    period = Period(0, 2 * DAY_US)
    report = build_report(gateway=HOSTILE, period=period, generated_us=DAY_US, current=_builder([row]),
                          previous=_builder([]), manual=({}, {}), revocations=({}, {}))  # fmt: skip
    page = render_html(report)
    assert "<script>" not in page and "<img" not in page and "onerror=alert(2)>" not in page
    assert "&lt;script&gt;" in page


def test_the_citizen_page_never_writes_markup_from_data() -> None:
    script = (WEB / "app.js").read_text() + (WEB / "i18n.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


def test_the_citizens_csv_copy_holds_no_live_formula() -> None:
    entry = AccessEntry(
        id=1, time_us=DAY_US, agency_id="-1-1", agency_name=FORMULA, service="@SUM(A1)", data_fields=(("x", "+1"),),
        purpose="unknown", purpose_title={"en": "=1+1"}, legal_basis="A6-1-e", legal_basis_title="\tx",
        legal_reference="\r=cmd", consent_id="", outcome="refused", reason="NO_MANDATE", reason_title="",
        ai_system="", record_hash="ab",
    )  # fmt: skip
    body, media = _export_body([entry], 0, "csv", DAY_US)
    assert media.startswith("text/csv")
    header, row = list(csv.reader(io.StringIO(body)))
    assert not any(cell.startswith(FORMULA_STARTS) for cell in row), row
    assert row[header.index("agency_name")] == "'" + FORMULA
