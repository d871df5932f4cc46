"""Running the report: read both periods once, with progress, and build the document."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from observability.report import Period, ReportBuilder, build_report
from observability.report_source import AuditSource

__all__ = ["run_report"]

Progress = Callable[[int], None]  # called with the number of rows just read


def run_report(
    source: AuditSource,
    *,
    providers: Mapping[str, str],
    period: Period,
    gateway: str,
    generated_us: int,
    manual: tuple[Mapping[str, int], Mapping[str, int]],
    revocations: tuple[Mapping[str, int], Mapping[str, int]],
    progress: Progress | None = None,
) -> dict[str, Any]:
    builders = (ReportBuilder(providers), ReportBuilder(providers))
    for builder, p in zip(builders, (period, period.previous()), strict=True):
        seen = 0
        for row in source.rows(p):
            builder.add(row)
            seen += 1
            if progress is not None and seen % 10_000 == 0:
                progress(10_000)
        if progress is not None:
            progress(seen % 10_000)
    return build_report(
        gateway=gateway,
        period=period,
        generated_us=generated_us,
        current=builders[0],
        previous=builders[1],
        manual=manual,
        revocations=revocations,
    )
