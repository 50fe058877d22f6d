"""A fix for the pinned BentoML (1.4.39), applied before BentoML builds the app; drop it when upstream has it.

BentoML's TimeoutMiddleware arms `loop.call_later(timeout, ...)` for every request and never cancels it, so
each request leaves a timer, a future and a context alive for `traffic.timeout` seconds (30 here): ~75,000
live timers at 2,500 requests/s. They all reach the oldest garbage-collector generation, whose collections
then took 40-80 ms: the one-image p99 at 64 users was 80-90 ms with the leak and 35 ms without (measured
side by side with loadtests/quick; docs/benchmarks.md, "The fast path"). The fix cancels the timer once the
response has started (or the app has ended without one); timeouts still answer 504 as before.
tests/service/test_compat.py fails when the pinned class stops leaking: the signal to delete this module.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bentoml._internal.server.http import traffic

from .guard import Receive, Scope, Send


class CancellingTimeoutMiddleware(traffic.TimeoutMiddleware):
    """BentoML's TimeoutMiddleware, with its per-request timer cancelled when the response starts."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started: asyncio.Future[Any] = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, started)

        async def send_and_mark(message: dict[str, Any]) -> None:
            if not started.done():
                started.set_result(None)
            await send(message)

        app = asyncio.ensure_future(self.app(scope, receive, send_and_mark))
        # an app that fails (or returns) without answering: report it now, not after the timeout
        app.add_done_callback(lambda _: started.done() or started.set_result(None))
        try:
            await started
        except TimeoutError:
            if app.cancel():
                await send_error_504(self.timeout, scope, receive, send)
            return
        finally:
            timer.cancel()
        await app


async def send_error_504(timeout: float, scope: Scope, receive: Receive, send: Send) -> None:
    from starlette.responses import JSONResponse

    message = f"Not able to process the request in {timeout} seconds"  # BentoML's own words
    await JSONResponse({"error": message}, status_code=504)(scope, receive, send)


def install() -> None:
    """Idempotent. BentoML imports TimeoutMiddleware from this module when it builds each app."""
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware
