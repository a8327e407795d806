"""Prometheus metrics: `GET /metrics` in the text exposition format (app/metrics.py)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.metrics import exposition

router = APIRouter(tags=["operations"])


# Not in the OpenAPI document (like the page at /): a scrape target in Prometheus' own text format, not a
# JSON API; README and docs/CONTRACTS.md describe it.
@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics() -> Response:
    """Requests and latency histograms per route template, the served model version per worker,
    sessions written, response-cache hits and misses (app/metrics.py names them)."""
    body, media_type = exposition()
    return Response(body, media_type=media_type)
