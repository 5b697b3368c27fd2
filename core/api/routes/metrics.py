"""GET /metrics (Prometheus text format); included only when NIMBUS_METRICS__ENABLED is on."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from core.security.scrape import metrics_access
from core.settings import MetricsSettings

if TYPE_CHECKING:
    from core.metrics.prometheus import PrometheusRecorder


def router(settings: MetricsSettings) -> APIRouter:
    routes = APIRouter(tags=["metrics"])

    @routes.get(
        "/metrics",
        dependencies=[Depends(metrics_access(settings))],
        summary="Prometheus metrics (counters, histograms, engine gauges)",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def metrics(request: Request) -> Response:
        exporter = cast("PrometheusRecorder", request.app.state.prometheus)
        body, content_type = exporter.render()
        return Response(body, media_type=content_type)

    return routes
