"""The interoperability report over a generated exchange log of 100,000+ exchanges.

The log is appended straight into the SQLite audit store (chained rows, one
bulk insert), the manual submissions into the ops store and the revocations into
the consent store; ``gateway report`` then runs as a user would. Every figure is
recomputed here from the generated records, by other means.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adapters.stores._audit_common import chain_batch
from adapters.stores.audit_sqlite import SqliteAuditLog
from adapters.stores.consent_sqlite import SqliteConsentStore
from adapters.stores.ops_store import SqliteOpsStore
from consent import Consent
from gateway.core.audit_chain import ROW_COLUMNS
from gateway.core.ops_records import ManualSubmission
from gateway.core.types import AuditRecord, EventKind, Outcome
from gateway.demo.setup import ensure_demo
from gateway.entrypoints.cli import app

N_CURRENT = 100_000
N_PREVIOUS = 20_000
POP = "registry.population.v1.PopulationRegistry/GetPerson"
TAX = "registry.tax.v1.TaxRegistry/GetIncomeCertificate"
BIZ = "registry.business.v1.BusinessRegistry/GetCompany"
PROVIDERS = {
    POP: "CTIE - Registre national des personnes physiques",
    TAX: "ACD - Administration des contributions directes",
    BIZ: "LBR - Registre de commerce et des sociétés",
}
CONSUMERS = {
    "cedies": [(POP, "student-aid", "A6-1-e"), (TAX, "student-aid", "A6-1-a")],
    "procurement": [(BIZ, "procurement-check", "A6-1-c")],
    "cnap": [(POP, "family-benefits", "A6-1-e")],
}
REFUSALS = ["NO_MANDATE", "UNKNOWN_PURPOSE", "CONSENT_MISSING", "CONSENT_REVOKED", "INVALID_ARGUMENT"]
ERRORS = ["SUBJECT_NOT_FOUND", "REGISTRY_UNAVAILABLE", "REGISTRY_TIMEOUT", "REGISTRY_BAD_RESPONSE"]
REFUSED_BEFORE_MANDATE = {"NO_MANDATE", "UNKNOWN_PURPOSE", "INVALID_ARGUMENT"}


def _us(y: int, m: int = 1, d: int = 1) -> int:
    return int(datetime(y, m, d, tzinfo=UTC).timestamp()) * 1_000_000


START, END, PREV = _us(2025), _us(2026), _us(2024)


def _record(rng: random.Random, time_us: int) -> AuditRecord:
    consumer = rng.choice(list(CONSUMERS))
    service, purpose, basis = rng.choice(CONSUMERS[consumer])
    roll = rng.random()
    outcome, reason = (
        (Outcome.OK, "")
        if roll < 0.85
        else (Outcome.REFUSED, rng.choice(REFUSALS))
        if roll < 0.95
        else (Outcome.ERROR, rng.choice(ERRORS))
    )
    if reason in REFUSED_BEFORE_MANDATE:
        basis = ""
    return AuditRecord(
        time_us=time_us,
        kind=EventKind.EXCHANGE,
        consumer=consumer,
        service=service,
        purpose=purpose,
        legal_basis=basis,
        legal_reference="",
        subject=f"pseudo-{rng.randrange(5000)}",
        consent_id="",
        case_id=f"case-{rng.randrange(20_000)}" if rng.random() < 0.7 else "",
        officer_id="",
        request_id="",
        trace_id="",
        fields=("given_names",) if outcome is Outcome.OK else (),
        outcome=outcome,
        reason=reason,
        latency_us=int(rng.lognormvariate(7.5, 0.6)) + 200,
        protocol=rng.choice(["grpc", "rest"]),
        ai_system=rng.choice(["", "", "", "", "EU-AI-2025-0042"]),
    )


def generate(seed: int = 7) -> list[AuditRecord]:
    rng = random.Random(seed)
    times = (
        [rng.randrange(START, END) for _ in range(N_CURRENT)]
        + [rng.randrange(PREV, START) for _ in range(N_PREVIOUS)]
        + [rng.randrange(END, END + 86_400_000_000) for _ in range(500)]
    )
    records = [_record(rng, t) for t in sorted(times)]
    admin = AuditRecord(
        START + 5,
        EventKind.ADMIN,
        "admin",
        "mandates",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        (),
        Outcome.OK,
        "",
        0,
        "admin",
    )
    return [*records, admin]


def bulk_append(db: Path, records: list[AuditRecord]) -> None:
    """Append chained rows in one transaction, as the store's writer would, without one future per row."""
    asyncio.run(_migrate(db))
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        head_seq, head_hash = conn.execute("SELECT seq, hash FROM audit_head").fetchone()
        rows = chain_batch(head_seq, head_hash, records)
        marks = ", ".join("?" * len(ROW_COLUMNS))
        conn.executemany(f"INSERT INTO audit_log ({', '.join(ROW_COLUMNS)}) VALUES ({marks})", rows)
        conn.execute("UPDATE audit_head SET seq = ?, hash = ?", (rows[-1][0], rows[-1][-1]))
        conn.execute("COMMIT")
    finally:
        conn.close()


async def _migrate(db: Path) -> None:
    log = SqliteAuditLog(db)
    await log.start()
    await log.close()


MANUAL = [
    (START + 10, "cedies", 1200),
    (START + 99, "cedies", 300),
    (START + 7, "cnap", 450),
    (PREV + 3, "cedies", 900),
    (END + 1, "cedies", 10_000),
]


async def _side_stores(data_dir: Path) -> None:
    ops = SqliteOpsStore(data_dir / "ops.db")
    await ops.start()
    for t, consumer, docs in MANUAL:
        await ops.add(ManualSubmission(t, consumer, "procedure-x", docs))
    await ops.close()
    consents = SqliteConsentStore(data_dir / "consents.db")
    for i, (consumer, revoked) in enumerate(
        [("cedies", START + 1), ("cedies", START + 2), ("cnap", START + 3), ("cedies", PREV + 1), ("cedies", 0)]
    ):
        await consents.add(Consent(f"c{i}", f"s{i}", consumer, "student-aid", granted_us=PREV))
        if revoked:
            await consents.revoke(f"c{i}", f"s{i}", revoked)
    await consents.close()


@dataclass
class Generated:
    data_dir: Path
    config: Path
    records: list[AuditRecord]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    data_dir = tmp_path_factory.mktemp("report")
    config = ensure_demo(data_dir)
    records = generate()
    bulk_append(data_dir / "audit.db", records)
    asyncio.run(_side_stores(data_dir))
    return Generated(data_dir, config, records)


def run_cli(g: Generated, fmt: str, output: Path, since: str = "2025-01-01", until: str = "2026-01-01") -> None:
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--from",
            since,
            "--to",
            until,
            "--format",
            fmt,
            "--output",
            str(output),
            "--config",
            str(g.config),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def report(generated: Generated, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("out") / "report.json"
    run_cli(generated, "json", out)
    return json.loads(out.read_text())  # type: ignore[no-any-return]


# --- the figures, recomputed ---------------------------------------------------------------------


def _in(records: list[AuditRecord], lo: int, hi: int) -> list[AuditRecord]:
    return [r for r in records if r.kind is EventKind.EXCHANGE and lo <= r.time_us < hi]


def _nearest_rank(values: list[int], p: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def test_the_log_is_big_enough(generated: Generated, report: dict[str, Any]) -> None:
    assert len(_in(generated.records, START, END)) == N_CURRENT == report["totals"]["exchanges"]
    assert report["schema"] == "passerelle.report/v1"
    assert report["period"] == {"from": "2025-01-01", "to": "2026-01-01"}
    assert report["previous_period"] == {"from": "2024-01-01", "to": "2025-01-01"}


def test_per_consumer_counts_match(generated: Generated, report: dict[str, Any]) -> None:
    current = _in(generated.records, START, END)
    expected: dict[str, dict[str, Any]] = {}
    for consumer in CONSUMERS:
        mine = [r for r in current if r.consumer == consumer]
        ok = [r for r in mine if r.outcome is Outcome.OK]
        refused = [r for r in mine if r.outcome is Outcome.REFUSED]
        expected[consumer] = {
            "exchanges": len(mine),
            "ok": len(ok),
            "refused": len(refused),
            "errors": sum(r.outcome is Outcome.ERROR for r in mine),
            "distinct_services": len({r.service for r in mine}),
            "distinct_purposes": len({r.purpose for r in mine}),
            "distinct_cases": len({r.case_id for r in ok if r.case_id}),
            "refusals_by_reason": dict(Counter(r.reason for r in refused)),
            "ai_exchanges": sum(bool(r.ai_system) for r in mine),
            "legal_bases": dict(Counter(r.legal_basis for r in mine if r.legal_basis)),
        }
    got = {c["id"]: {k: c[k] for k in expected["cedies"]} for c in report["consumers"]}
    assert got == expected


def test_once_only_digitalisation_and_consent_figures_match(generated: Generated, report: dict[str, Any]) -> None:
    current = _in(generated.records, START, END)
    by_id = {c["id"]: c for c in report["consumers"]}
    manual: defaultdict[str, int] = defaultdict(int)
    for t, consumer, docs in MANUAL:
        if START <= t < END:
            manual[consumer] += docs
    for consumer in CONSUMERS:
        served = sum(r.consumer == consumer and r.outcome is Outcome.OK for r in current)
        assert by_id[consumer]["manual_documents"] == manual[consumer]
        assert by_id[consumer]["digitalisation_rate"] == pytest.approx(served / (served + manual[consumer]), abs=1e-6)
    with_basis = [r for r in current if r.legal_basis]
    consent = sum(r.legal_basis == "A6-1-a" for r in with_basis)
    assert report["totals"]["consent_share"] == pytest.approx(consent / len(with_basis), abs=1e-6)
    assert {c["id"]: c["consent_revocations"] for c in report["consumers"]} == {
        "cedies": 2,
        "cnap": 1,
        "procurement": 0,
    }
    assert report["totals"]["refusal_rate"] == pytest.approx(
        sum(r.outcome is Outcome.REFUSED for r in current) / len(current), abs=1e-6
    )


def test_registry_availability_and_latency_match(generated: Generated, report: dict[str, Any]) -> None:
    current = _in(generated.records, START, END)
    for p in report["providers"]:
        mine = [r for r in current if PROVIDERS[r.service] == p["id"]]
        reached = [r for r in mine if r.reason in ("", "SUBJECT_NOT_FOUND") or r.reason.startswith("REGISTRY_")]
        failed = sum(r.reason.startswith("REGISTRY_") for r in reached)
        assert (p["exchanges"], p["registry_calls"], p["registry_failures"]) == (len(mine), len(reached), failed)
        assert p["availability"] == pytest.approx(1 - failed / len(reached), abs=1e-6)
        for q, key in ((50, "latency_p50_ms"), (95, "latency_p95_ms")):
            exact = _nearest_rank([r.latency_us for r in reached], q)
            assert exact <= p[key] * 1000 + 0.5 <= exact * 1.01 + 1, (q, exact, p[key])  # within 1 %
    assert {p["id"] for p in report["providers"]} == set(PROVIDERS.values())


def test_trend_compares_with_the_previous_period(generated: Generated, report: dict[str, Any]) -> None:
    previous = _in(generated.records, PREV, START)
    trend = report["trend"]
    assert trend["exchanges"]["previous"] == len(previous) == N_PREVIOUS
    assert trend["exchanges"]["delta"] == N_CURRENT - N_PREVIOUS
    assert trend["consent_revocations"] == {"current": 3, "previous": 1, "delta": 2, "relative": 2.0}
    served_before = sum(r.outcome is Outcome.OK for r in previous)
    assert trend["digitalisation_rate"]["previous"] == pytest.approx(served_before / (served_before + 900), abs=1e-6)


@pytest.fixture(scope="module")
def html_report(generated: Generated, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html") / "report.html"
    run_cli(generated, "html", out)
    return out


def test_the_html_page_is_self_contained(html_report: Path) -> None:
    page = html_report.read_text()
    assert page.count("<svg") >= 4
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page


@pytest.mark.browser
def test_the_html_page_renders_in_headless_chromium(html_report: Path) -> None:
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and /usr/bin/chromium is missing (apt-get install chromium)")
        pytest.skip("no /usr/bin/chromium: apt-get install chromium (browsers are never downloaded)")
    from playwright.sync_api import sync_playwright

    out = html_report
    artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(out.as_uri())
            assert page.title().startswith("Interoperability report 2025-01-01")
            assert page.locator("svg").count() >= 4
            assert page.locator("rect.bar").count() >= 10
            widths = page.eval_on_selector_all("svg", "els => els.map(e => e.getBoundingClientRect().width)")
            assert all(w > 200 for w in widths)
            assert page.locator("text=Registry availability").count() == 1
            page.screenshot(path=str(artifacts / "interoperability-report.png"), full_page=True)
        finally:
            browser.close()
    assert requests == [out.as_uri()], "the page loads nothing else"
    assert (artifacts / "interoperability-report.png").stat().st_size > 10_000
