"""``gateway report``: the yearly interoperability report from the exchange log."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from gateway.config import Config, ConfigError, load_config
from observability.report import Period
from observability.report_html import render_html
from observability.report_run import run_report
from observability.report_source import AuditSource, consent_revocations_at

__all__ = ["report"]

_DEMO_DIR = Path(".gateway-demo")


def _day_us(value: str, option: str) -> int:
    try:
        d = date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option) from None
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * 1_000_000


def _providers(config: Config) -> dict[str, str]:
    from gateway.core.contracts import load_operations

    ops = load_operations([r.contract for r in config.registries])
    return {name: op.provider or op.service for name, op in ops.items()}


async def _manual(config: Config, period: Period) -> tuple[dict[str, int], dict[str, int]]:
    from adapters.stores.ops_store import open_ops_store

    store = open_ops_store(config.gateway.audit, config.path)
    await store.start()
    try:
        before = period.previous()
        return (
            await store.totals(period.since_us, period.until_us),
            await store.totals(before.since_us, before.until_us),
        )
    finally:
        await store.close()


def report(
    since: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD (UTC).")],
    until: Annotated[str, typer.Option("--to", help="Day after the last, YYYY-MM-DD (UTC, excluded).")],
    output: Annotated[Path, typer.Option("--output", help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", help="json or html.")] = "json",
    config: Annotated[Path | None, typer.Option("--config", help="Gateway configuration (TOML).")] = None,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Demo data folder (used when --config is not given).")
    ] = _DEMO_DIR,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """The interoperability report (digital-maturity indicators) for [--from, --to) and the period before it.

    The previous period has the same length, for comparison.
    """
    if fmt not in ("json", "html"):
        raise typer.BadParameter("json or html", param_hint="--format")
    period = Period(_day_us(since, "--from"), _day_us(until, "--to"))
    if period.until_us <= period.since_us:
        raise typer.BadParameter("must be after --from", param_hint="--to")
    path = config or data_dir / "gateway.toml"
    if config is None and not path.exists():
        typer.echo(f"no configuration at {path}: give --config FILE, or run `gateway serve --demo` first", err=True)
        raise typer.Exit(2)
    try:
        conf = load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    from gateway.config_files import store_problems

    for problem in (problems := store_problems(conf, "audit", "consents")):
        typer.echo(f"{path}: {problem}", err=True)
    if problems:
        raise typer.Exit(2)
    source = AuditSource(conf.gateway.audit, conf.path)
    revocations = tuple(
        consent_revocations_at(conf.gateway.consents, conf.path, p)
        for p in (period, period.previous())
    )
    kwargs = dict(
        providers=_providers(conf),
        period=period,
        gateway=conf.gateway.name,
        generated_us=time.time_ns() // 1000,
        manual=asyncio.run(_manual(conf, period)),
        revocations=revocations,
    )
    if quiet:
        document = run_report(source, **kwargs)  # type: ignore[arg-type]
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        total = source.count(period) + source.count(period.previous())
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task("reading the exchange log", total=total)
            document = run_report(source, progress=lambda n: bar.advance(task, n), **kwargs)  # type: ignore[arg-type]
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n" if fmt == "json" else render_html(document)
    output.write_text(text, encoding="utf-8")
    t = document["totals"]
    typer.echo(f"{output}: {t['exchanges']} exchanges, {t['evidence_served']} evidence served once-only", err=True)
