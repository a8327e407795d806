"""API keys of the routes that change state: a route group exists only when its key is configured.

Both keys travel in the X-API-Key header. Each is an OpenAPI security scheme of its own (FastAPI's
`APIKeyHeader`), so the docs page says which routes need which key and its "Authorize" button sends it.
"""

from __future__ import annotations

import secrets

from fastapi import HTTPException
from fastapi.security import APIKeyHeader
from pydantic import SecretStr

HEADER = "X-API-Key"
UNAUTHORIZED = f"Missing or wrong API key (header {HEADER})"

# auto_error=False: a missing key reaches `check_key`, which answers 401 with the one error body.
WRITE_KEY = APIKeyHeader(
    name=HEADER, scheme_name="WriteKey", description="WDREC_WRITE_API_KEY: the write routes", auto_error=False
)
ADMIN_KEY = APIKeyHeader(
    name=HEADER, scheme_name="AdminKey", description="WDREC_ADMIN_API_KEY: /admin/reload", auto_error=False
)


def key_value(key: SecretStr | None) -> str:
    """The configured key; empty when none is set (its routes are then not mounted)."""
    return key.get_secret_value() if key is not None else ""


def check_key(expected: SecretStr | None, given: str | None) -> None:
    """401 unless `given` equals the configured key (compared in constant time)."""
    wanted = key_value(expected)
    if not wanted or not secrets.compare_digest((given or "").encode(), wanted.encode()):
        raise HTTPException(401, UNAUTHORIZED)
