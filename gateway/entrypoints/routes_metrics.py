"""``GET /metrics`` (Prometheus text) and the REST door's own spans and metrics (``AsgiTelemetry``)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Response

from gateway.application.runtime import RestInstaller
from observability.frontdoor import AsgiTelemetry
from observability.metrics import GatewayMetrics

__all__ = ["metrics_installer"]

_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def metrics_installer(metrics: GatewayMetrics) -> RestInstaller:
    def install(app: FastAPI) -> dict[str, Any]:
        @app.get("/metrics", include_in_schema=False)
        async def scrape() -> Response:
            return Response(metrics.prometheus_text(), media_type=_PROMETHEUS)

        app.add_middleware(AsgiTelemetry, metrics=metrics)
        return {}

    return install
