"""Several worker processes behind one port, restarted one at a time without dropping a connection.

The supervisor binds one listening socket per worker slot, all on the same address with SO_REUSEPORT,
and hands slot i's socket to the worker in slot i. The kernel spreads new connections over the slots by
a hash of their addresses, so each worker accepts only from its own socket: a burst of connections is
shared instead of being taken whole by whichever worker wakes first (uvicorn's one shared socket). A
socket that a worker has not yet listened on belongs to no group, so nothing is routed to a slot before
its first worker serves.

A rolling restart (SIGHUP to the supervisor, or POST /admin/reload) replaces slot by slot: the new worker
loads and verifies the artifacts, then listens on the slot's socket beside the old one; only then is the
old worker told to stop. The socket itself stays open in the supervisor, so connections waiting in its
queue are accepted by the new worker instead of being reset with a closing socket. The old worker
(`DrainingHttpToolsProtocol`) finishes the requests it is answering with `Connection: close`, answers the
next request of each idle keep-alive connection the same way (a client sending at that moment never meets
a closed socket), and closes connections still idle after `DRAIN_IDLE_S`.
"""

from __future__ import annotations

import logging
import socket

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from app.metrics import multiprocess_run, retire_worker

logger = logging.getLogger("uvicorn.error")

DRAIN_IDLE_S = 2.0  # a retiring worker closes a keep-alive connection that sent nothing for this long


class DrainingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, except that at shutdown an idle keep-alive connection is not closed
    at once but answers its next request with `Connection: close` (closed if still idle after
    DRAIN_IDLE_S): closing it at once resets a request the client may be sending at that moment."""

    draining = False

    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self.draining = True
            self.loop.call_later(DRAIN_IDLE_S, self._close_if_idle)
        else:
            self.cycle.keep_alive = False

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.draining:
            self.cycle.keep_alive = False

    def _close_if_idle(self) -> None:
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


class SlotSupervisor(Multiprocess):
    """uvicorn's supervisor (rolling restart on SIGHUP, a dead worker replaced), with one listening
    socket per worker slot kept open across the slot's workers; each retired worker's live metrics are
    dropped. The worker count is fixed: SIGTTIN and SIGTTOU are ignored."""

    def __init__(self, config: uvicorn.Config, listeners: list[socket.socket]) -> None:
        super().__init__(config, listeners)
        self.listeners = listeners

    def spawn(self, slot: int) -> Process:
        process = Process(self.config, [self.listeners[slot]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self.spawn(slot) for slot in range(self.processes_num)]

    def restart_all(self) -> None:
        """Replace each slot's worker, its replacement serving before the old one is stopped."""
        for slot, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self.spawn(slot)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                retire_worker(new.pid)
                if not self.should_exit.is_set():
                    logger.error(
                        "New child process [%s] was not ready in time; keeping worker [%s] and aborting "
                        "the restart.",
                        new.pid,
                        old.pid,
                    )
                return
            old.terminate()
            old.join()
            retire_worker(old.pid)
            self.processes[slot] = new

    def keep_subprocess_alive(self) -> None:
        """Replace a worker that died or hangs; stop everything if one failed during its start-up."""
        if self.should_exit.is_set():
            return
        for slot, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            retire_worker(process.pid)
            if process.exitcode == uvicorn.config.STARTUP_FAILURE:
                logger.error("Child process [%s] failed to start, stopping the parent process.", process.pid)
                self.should_exit.set()
                return
            logger.info("Child process [%s] died", process.pid)
            self.processes[slot] = self.spawn(slot)

    def handle_ttin(self) -> None:
        logger.warning("SIGTTIN ignored: the number of workers is fixed (WDREC_WORKERS)")

    def handle_ttou(self) -> None:
        logger.warning("SIGTTOU ignored: the number of workers is fixed (WDREC_WORKERS)")


def slot_listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` sockets bound to host:port with SO_REUSEPORT, not yet listening (each worker listens)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listeners = []
    for _ in range(count):
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        listeners.append(sock)
    return listeners


def run_workers(config: uvicorn.Config) -> None:
    """`config.workers` worker processes on config.host:config.port under a SlotSupervisor, with
    Prometheus' multiprocess folder for the run (app/metrics.py)."""
    listeners = slot_listeners(config.host, config.port, config.workers)
    logger.info("Uvicorn running on http://%s:%d with %d workers", config.host, config.port, config.workers)
    try:
        with multiprocess_run():
            SlotSupervisor(config, listeners).run()
    finally:
        for sock in listeners:
            sock.close()
