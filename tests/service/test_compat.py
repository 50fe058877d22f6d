"""The BentoML timeout fix: the pinned class still needs it, and the fix keeps BentoML's behaviour."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bentoml._internal.server.http.traffic import TimeoutMiddleware

from service.compat import CancellingTimeoutMiddleware

Message = dict[str, Any]


async def answer_at_once(scope: dict, receive: Any, send: Any) -> None:  # noqa: ANN401
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def serve(middleware: Any, requests: int) -> tuple[list[Message], int]:  # noqa: ANN401
    """Send `requests` requests through `middleware`; return the messages sent and the timers still armed."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    for _ in range(requests):
        await middleware({"type": "http"}, receive, send)
    loop = asyncio.get_running_loop()
    armed = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
    return sent, len(armed)


def run(coroutine: Any) -> Any:  # noqa: ANN401
    """On asyncio's own loop, whose pending timers are inspectable, whatever loop policy is installed."""
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coroutine)


def test_the_pinned_bentoml_leaves_a_timer_per_request() -> None:
    """When this fails, BentoML has fixed its TimeoutMiddleware: delete service/compat.py."""
    _, armed = run(serve(TimeoutMiddleware(answer_at_once, timeout=30), requests=20))
    assert armed == 20


def test_the_fix_leaves_no_timer_and_answers_the_same() -> None:
    sent, armed = run(serve(CancellingTimeoutMiddleware(answer_at_once, timeout=30), requests=20))
    assert armed == 0
    assert [m["type"] for m in sent[:2]] == ["http.response.start", "http.response.body"]
    assert len(sent) == 40


def test_the_fix_still_answers_504_past_the_timeout() -> None:
    async def slow(scope: dict, receive: Any, send: Any) -> None:  # noqa: ANN401
        await asyncio.sleep(10)

    sent, _ = run(serve(CancellingTimeoutMiddleware(slow, timeout=0.05), requests=1))
    assert sent[0]["status"] == 504
    assert b"Not able to process the request in 0.05 seconds" in sent[1]["body"]


def test_an_app_that_fails_before_answering_fails_now_not_at_the_timeout() -> None:
    async def broken(scope: dict, receive: Any, send: Any) -> None:  # noqa: ANN401
        raise RuntimeError("boom")

    async def timed() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(RuntimeError, match="boom"):
            await serve(CancellingTimeoutMiddleware(broken, timeout=30), requests=1)
        return loop.time() - start

    assert run(timed()) < 5


def test_a_response_that_has_started_is_not_cut_off_by_the_timeout() -> None:
    async def slow_body(scope: dict, receive: Any, send: Any) -> None:  # noqa: ANN401
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.1)
        await send({"type": "http.response.body", "body": b"late but whole"})

    sent, _ = run(serve(CancellingTimeoutMiddleware(slow_body, timeout=0.05), requests=1))
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b"late but whole"
