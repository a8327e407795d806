"""Several worker processes that the kernel balances: each binds its own listening socket, SO_REUSEPORT.

uvicorn's supervisor binds one socket and shares it with its workers: a burst of new connections wakes
them all and the first to run accepts the whole burst (wrk's 32 connections landed on one worker in about
half the runs of bench/serve.py, leaving the other core idle). Here no socket is shared: each worker's
server binds the address itself with SO_REUSEPORT, and the kernel spreads new connections over the
listening workers by a hash of their addresses. uvicorn binds only after the app's lifespan start-up and
closes the listener first when it shuts down, so a worker takes connections exactly while it can answer
them: a rolling restart never routes a connection to a worker that is still loading or already leaving.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
import uvloop
from uvicorn.supervisors import Multiprocess


class ReusePortLoop(uvloop.Loop):
    """uvloop, except that a server bound from a host and port shares the port (SO_REUSEPORT)."""

    async def create_server(  # type: ignore[override]  # forwards each overload, adding reuse_port
        self, *args: Any, **kwargs: Any
    ) -> asyncio.AbstractServer:
        if kwargs.get("sock") is None:
            kwargs["reuse_port"] = True
        return await super().create_server(*args, **kwargs)


def run_workers(config: uvicorn.Config) -> None:
    """uvicorn's supervisor over `config.workers` processes (rolling restart on SIGHUP, a dead worker
    replaced), each binding config.host:config.port itself; `config.loop` must be this module's
    ReusePortLoop."""
    # Without sockets to share, each worker's server binds from config.host and config.port.
    Multiprocess(config, sockets=None).run()  # type: ignore[arg-type]
