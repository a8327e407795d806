"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ServedDep
from app.api.errors import error_responses
from app.schemas import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers")
async def health() -> Health:
    """Always ok while the process serves requests; see /ready for the model."""
    return Health(status="ok")


@router.get("/ready", summary="Readiness: an artifact set is loaded", responses=error_responses(503))
async def ready(served: ServedDep) -> Ready:
    """Ok with the loaded model version once the artifacts are loaded and verified; 503 before."""
    return Ready(status="ready", version=served.version)
