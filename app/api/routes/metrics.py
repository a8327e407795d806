"""Prometheus metrics: `GET /metrics` in the text exposition format (app/metrics.py)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.metrics import exposition

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics, summed over every worker process",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics() -> Response:
    """Requests and latency histograms per route template, the served model version per worker,
    sessions written, response-cache hits and misses (app/metrics.py names them)."""
    body, media_type = exposition()
    return Response(body, media_type=media_type)
