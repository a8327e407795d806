"""Hot reload of the artifacts: `POST /admin/reload` (API key); the lifecycle itself is app/lifecycle.py.

The route exists only when `WDREC_ADMIN_API_KEY` is set. With several worker processes it requests their
rolling restart and answers 202 at once; /ready then shows the version each worker serves.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, Security
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.api.auth import ADMIN_KEY, UNAUTHORIZED, check_key
from app.core.config import Settings
from app.lifecycle import ReloadError, reload_served, request_rolling_restart
from app.schemas import ErrorResponse


class ReloadResult(BaseModel):
    """The outcome of a successful reload."""

    version: str  # now served
    previous: str  # served before
    changed: bool  # False when `current` still pointed at the served version

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "version": "20261127T033117Z-d0b4d55c",
                    "previous": "20261126T101500Z-d0b4d55c",
                    "changed": True,
                }
            ]
        }
    }


class RestartResult(BaseModel):
    """A rolling restart of the worker processes was requested (202)."""

    restarting_workers: int
    serving: str  # the version this worker serves until it is replaced

    model_config = {
        "json_schema_extra": {"examples": [{"restarting_workers": 2, "serving": "20261126T101500Z-d0b4d55c"}]}
    }


router = APIRouter(prefix="/admin", tags=["admin"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": UNAUTHORIZED},
    202: {"model": RestartResult, "description": "Several workers: their rolling restart was requested"},
    409: {"model": ErrorResponse, "description": "The new version is bad; the old one is still served"},
    413: {"model": ErrorResponse, "description": "Request body too large"},
}


@router.post(
    "/reload", summary="Reload the newest artifact version", response_model=ReloadResult, responses=ERRORS
)
async def reload(
    request: Request, key: Annotated[str | None, Security(ADMIN_KEY)]
) -> ReloadResult | JSONResponse:
    """Load and verify `current` again and swap it in; on failure keep serving the old version (409, why).
    With several workers: request their rolling restart (202)."""
    settings: Settings = request.app.state.settings
    check_key(settings.admin_api_key, key)
    if settings.workers > 1:
        request_rolling_restart()
        served = RestartResult(restarting_workers=settings.workers, serving=request.app.state.served.version)
        return JSONResponse(served.model_dump(), status_code=202)
    try:
        swap = await reload_served(request.app)
    except ReloadError as exc:
        raise HTTPException(409, str(exc)) from exc
    return ReloadResult(version=swap.version, previous=swap.previous, changed=swap.version != swap.previous)
