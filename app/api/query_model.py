"""A route's query parameters read as one pydantic model, in one validation.

FastAPI resolves each declared query parameter on every request, inspecting its annotation anew each time:
GET /recommend's nine cost ~100 us a request, more than a cached answer's lookup. `read_query` instead
collects the parameters of a model from the query string and validates them at once with the model's
compiled validator; what is invalid is reported as FastAPI reports it (RequestValidationError, each error
located at ("query", field, ...)), so the 422 body is the one FastAPI would give. `query_parameters` is what
FastAPI documents for the same model declared as a query model (`Annotated[Model, Query()]`), which
app/api/openapi.py adds to the route's operation: the docs and the parser come from one model.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar, get_args, get_origin

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def _is_list(annotation: Any) -> bool:
    """Whether a field takes repeated values (list[...] or list[...] | None)."""
    return get_origin(annotation) is list or any(get_origin(arg) is list for arg in get_args(annotation))


def read_query(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency reading `model` from the request's query string: a repeated parameter gives a list
    field all its values and any other field its last one, as FastAPI does; parameters the model lacks are
    ignored."""
    lists = {name for name, field in model.model_fields.items() if _is_list(field.annotation)}
    names = set(model.model_fields)

    async def query(request: Request) -> M:
        params = request.query_params
        values = {
            name: params.getlist(name) if name in lists else params[name] for name in params if name in names
        }
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            errors = [{**error, "loc": ("query", *error["loc"])} for error in exc.errors(include_url=False)]
            raise RequestValidationError(errors) from None

    return query


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The OpenAPI parameters FastAPI documents for `model` as a route's query model."""

    async def route() -> None:
        return None

    declared = Annotated[model, Query()]  # type: ignore[valid-type]
    parameter = inspect.Parameter("query", inspect.Parameter.KEYWORD_ONLY, annotation=declared)
    route.__signature__ = inspect.Signature([parameter])  # type: ignore[attr-defined]
    app = FastAPI()
    app.get("/")(route)
    parameters: list[dict[str, Any]] = app.openapi()["paths"]["/"]["get"]["parameters"]
    return parameters
