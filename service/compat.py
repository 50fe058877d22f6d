"""A fix for the pinned BentoML (1.4.39), applied before BentoML builds the app; drop it when upstream has it.

BentoML's TimeoutMiddleware arms `loop.call_later(timeout, ...)` for every request and never cancels it, so
each request leaves a timer, a future and a context alive for `traffic.timeout` seconds (30 here): ~75,000
live timers at 2,500 requests/s. They all reach the oldest garbage-collector generation, whose collections
then took 40-80 ms: the one-image p99 at 64 users was 80-90 ms with the leak and 35 ms without (measured
side by side with loadtests/quick; docs/benchmarks.md, "The timer leak"). The fix cancels the timer once the
response has started, and runs the app in the request's own task; timeouts still answer 504 as before.
tests/service/test_compat.py fails when the pinned class stops leaking: the signal to delete this module.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bentoml._internal.server.http import traffic

from .guard import Receive, Scope, Send


class CancellingTimeoutMiddleware(traffic.TimeoutMiddleware):
    """BentoML's TimeoutMiddleware (504 when no response has started within `timeout`) without the leak, and
    without its extra task per request: `asyncio.timeout` runs the app in the request's own task and disarms
    once the response starts, so a long streamed body is not cut off, as in BentoML."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_disarm(message: dict[str, Any]) -> None:
            nonlocal started
            if not started:
                started = True
                deadline.reschedule(None)
            await send(message)

        try:
            async with asyncio.timeout(self.timeout) as deadline:
                await self.app(scope, receive, send_and_disarm)
        except TimeoutError:
            if started or not deadline.expired():  # the app's own TimeoutError, or too late for a 504
                raise
            await send_error_504(self.timeout, scope, receive, send)


async def send_error_504(timeout: float, scope: Scope, receive: Receive, send: Send) -> None:
    from starlette.responses import JSONResponse

    message = f"Not able to process the request in {timeout} seconds"  # BentoML's own words
    await JSONResponse({"error": message}, status_code=504)(scope, receive, send)


def install() -> None:
    """Idempotent. BentoML imports TimeoutMiddleware from this module when it builds each app."""
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware
