"""API keys of the routes that change state: a route group exists only when its key is configured."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Header, HTTPException, Request
from pydantic import SecretStr

UNAUTHORIZED = "Missing or wrong API key (header X-API-Key)"


def key_value(key: SecretStr | None) -> str:
    """The configured key; empty when none is set (its routes are then not mounted)."""
    return key.get_secret_value() if key is not None else ""


def check_key(expected: SecretStr | None, given: str | None) -> None:
    """401 unless `given` equals the configured key (compared in constant time)."""
    wanted = key_value(expected)
    if not wanted or not secrets.compare_digest((given or "").encode(), wanted.encode()):
        raise HTTPException(401, UNAUTHORIZED)


async def require_write_key(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """The write routes' guard: WDREC_WRITE_API_KEY in the X-API-Key header, else 401."""
    check_key(request.app.state.settings.write_api_key, x_api_key)
