"""Answering a request that waits on a future, once the work it waited for is done."""

from __future__ import annotations

import asyncio
from typing import Any


def settle(future: asyncio.Future[Any], outcome: object) -> None:
    """Give `future` its result, or raise `outcome` in it if it is an exception; a future already done (its
    request was cancelled: the client went away) is left alone."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
