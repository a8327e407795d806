"""A SIGHUP that arrives before the app's event loop can take the signal: remembered, not fatal."""

from __future__ import annotations

import signal
import threading

EARLY_SIGHUP = threading.Event()  # a SIGHUP arrived before the app's event loop took the signal over


def defer_early_sighup() -> None:
    """From now until the app's lifespan takes the signal over, remember a SIGHUP instead of dying of it (the
    default action): the app then reloads once it runs, so a version switched during start-up is picked up."""
    signal.signal(signal.SIGHUP, lambda signum, frame: EARLY_SIGHUP.set())
