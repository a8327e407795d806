"""One JSON error shape for every error: {"error": {"code", "message", "details"}}, never a stack trace."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from app.errors import (
    ExplanationsUnavailableError,
    NotReadyError,
    ProductsUnavailableError,
    ServiceError,
    SessionConflictError,
    StoreUnavailableError,
    UnknownClientError,
)
from app.schemas import ErrorResponse

logger = logging.getLogger(__name__)

STATUS_OF: dict[type[ServiceError], int] = {
    UnknownClientError: 404,
    ProductsUnavailableError: 409,
    ExplanationsUnavailableError: 409,
    SessionConflictError: 409,
    NotReadyError: 503,
    StoreUnavailableError: 503,
}


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    """The one error body every route, middleware and handler answers with."""
    body = {"error": {"code": code, "message": message, "details": jsonable_encoder(details)}}
    return JSONResponse(body, status_code=status)


def _code_of(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_")
    except ValueError:
        return "http_error"


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(STATUS_OF.get(type(exc), 422), exc.code, exc.message, exc.details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    response = error_response(exc.status_code, _code_of(exc.status_code), str(exc.detail))
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(_allowed_methods(request)) or response.headers["Allow"]
    return response


def _allowed_methods(request: Request) -> list[str]:
    """Every method the API documents at this path: Starlette names only the first matching route's (GET
    /clients/{id} and the write routes' PUT are two routes)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        if compile_path(template)[0].match(request.url.path):
            methods |= {method.upper() for method in operations}
    return sorted(methods | ({"HEAD"} if "GET" in methods else set()))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only where and why: echoing `input` back could repeat a huge or sensitive payload.
    details = [{"loc": list(err["loc"]), "message": err["msg"], "type": err["type"]} for err in exc.errors()]
    return error_response(422, "validation_error", "The request is invalid", details)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)


ERROR_DESCRIPTIONS = {
    400: "The request body cannot be decoded",
    401: "Missing or wrong API key (header X-API-Key)",
    404: "Unknown client",
    409: "Conflict: a session ID taken by another body (write routes), products asked of a model version "
    "without product tables, or explanations of one exported before them (retrain it)",
    413: "Request body too large",
    422: "Invalid request: malformed input, k out of range, unknown labels or nothing to score",
    503: "The model is not loaded yet, or the database is unavailable",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` documenting the given error statuses with the one error shape."""
    return {
        status: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[status]} for status in statuses
    }
