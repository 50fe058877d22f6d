"""Graceful drain on SIGTERM: stop being ready, keep answering, close connections after answers, then stop.

Why: uvicorn, on SIGTERM, closes its listening socket and every idle keep-alive connection at once. A load
balancer that still routes to the replica (its health check has not failed yet), or that reuses a keep-alive
connection to it, sends requests into connections that are being closed: behind HAProxy, 69 to 115 of 32,000
requests were lost when each of two replicas was restarted with a plain SIGTERM (issue 17). So on SIGTERM a
worker:

1. answers `/readyz` with 503 at once (`Drain.draining`, read by the service's `__is_ready__`), so balancers
   and Kubernetes take it out of rotation;
2. keeps serving for `MNIST_DRAIN_S` seconds, with `Connection: close` on every response (service/front.py),
   so each client's connection is closed by the server right after an answer, never under a request;
3. then hands the signal to uvicorn's own handler, which stops accepting, finishes the requests in flight and
   exits (BentoML's process manager allows each worker 30 s before it kills it).

A second SIGTERM during the drain skips the rest of it. With `MNIST_DRAIN_S=0` SIGTERM goes straight to
uvicorn, as before.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger("service.drain")


class Drain:
    """One per worker process: whether it is draining, and the SIGTERM handler that starts the drain."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False
        self._handed_on = False
        self._previous: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> bool:
        """Take SIGTERM over in this worker, keeping the handler it replaces (uvicorn's) to hand it on to.

        Called where BentoML creates the service instance: on the worker's main thread, in its running event
        loop, after uvicorn installed its handler. Elsewhere (an app built in a test's thread) it does nothing
        and returns False: only the main thread may set signal handlers.
        """
        if threading.current_thread() is not threading.main_thread():
            return False
        self._loop = asyncio.get_running_loop()
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return True

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self.draining or self.seconds <= 0 or self._loop is None:
            self._hand_on(signum)
            return
        self.draining = True
        log.warning("SIGTERM: not ready; serving with Connection: close for %g s, then stopping", self.seconds)
        # A signal handler runs between two bytecodes of the loop's thread: schedule, do not act, here.
        self._loop.call_soon_threadsafe(self._loop.call_later, self.seconds, self._hand_on, signum)

    def _hand_on(self, signum: int) -> None:
        """Give the signal to the handler this one replaced (uvicorn's: stop accepting, finish, exit)."""
        if self._handed_on:
            return
        self._handed_on = True
        self.draining = True
        previous = self._previous
        if callable(previous):
            previous(signum, None)
        else:  # the default action (or none was set): restore it and let the signal act
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
            signal.raise_signal(signum)
