"""service/bentoml_internals.py, each still needed by the pinned BentoML, each fix keeps its behaviour."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest
from _bentoml_sdk.method import APIMethod
from _bentoml_sdk.service import openapi
from bentoml._internal.server.http.traffic import TimeoutMiddleware

from service.bentoml_internals import (
    CancellingTimeoutMiddleware,
    RecoveringCorkDispatcher,
)

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
    """When this fails, BentoML has fixed its TimeoutMiddleware: delete CancellingTimeoutMiddleware (and its
    install) from service/bentoml_internals.py."""
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


# The adaptive batcher's learned wait, forgotten after an idle gap.


def dispatcher() -> RecoveringCorkDispatcher:
    """A dispatcher over an echo batch function; `cork.infer` sends one request through it."""

    async def echo(batch: Sequence[int]) -> list[int]:
        return list(batch)

    cork = RecoveringCorkDispatcher(
        max_latency_in_ms=1000, max_batch_size=8, fallback=lambda: None, get_batch_size=lambda _: 1
    )
    cork.infer = cork(echo)
    return cork


def learned(cork: RecoveringCorkDispatcher, wait: float) -> None:
    """As after an overload: the optimizer learned that first requests wait `wait` seconds."""
    cork.optimizer.wait = wait
    cork.optimizer.o_stat.extend([(4, 0.001, wait)] * 10)


def test_bentoml_still_keeps_the_learned_wait_where_the_fix_resets_it() -> None:
    """When this fails, BentoML moved what RecoveringCorkDispatcher resets: re-check it against the new version."""
    from bentoml._internal.marshal.dispatcher import CorkDispatcher, Optimizer

    optimizer = Optimizer(1.0)
    assert optimizer.wait == 0
    assert optimizer.o_stat.maxlen == 50
    optimizer.o_stat.append((1, 0.001, 0.07))
    optimizer.trigger_refresh()
    assert optimizer.wait == pytest.approx(0.07)  # the mean of the samples' waits, as the fix assumes
    assert "inbound_call" in vars(CorkDispatcher)
    assert "_queue" in CorkDispatcher(1, 1, fallback=lambda: None).__dict__


def test_the_learned_wait_is_forgotten_after_an_idle_gap() -> None:
    cork = dispatcher()
    learned(cork, 0.07)
    cork._last_arrival = time.monotonic() - 2 * cork.IDLE_RESET_S
    assert asyncio.run(asyncio.wait_for(cork.infer(1), 10)) == 1
    assert cork.optimizer.wait == 0
    assert {w for _, _, w in cork.optimizer.o_stat} == {0.0}  # a refresh cannot bring it back
    assert [n for n, _, _ in cork.optimizer.o_stat][:10] == [4] * 10  # the cost model (o_a, o_b) keeps its samples


def test_under_load_the_learned_wait_is_kept() -> None:
    cork = dispatcher()
    learned(cork, 0.07)
    cork._last_arrival = time.monotonic()  # the previous request came just now: traffic, not idleness
    cork._queue.append(object())  # and one is still waiting
    cork.forget_wait_if_idle(time.monotonic())
    assert cork.optimizer.wait == 0.07


def test_bentoml_still_leaves_request_bodies_optional_where_the_fix_requires_them(client: Any) -> None:  # noqa: ANN401
    """When the first assert fails, BentoML writes `required` itself: delete require_request_bodies."""
    from service.app import MNISTService

    api = MNISTService.apis["predict"]
    assert "required" not in APIMethod.openapi_request.__wrapped__(api)
    paths = client.get("/docs.json").json()["paths"]
    assert paths["/predict"]["post"]["requestBody"]["required"] is True
    assert paths["/predict_image"]["post"]["requestBody"]["required"] is True
    assert "required" not in paths["/metadata"]["post"]["requestBody"]  # no fields: an empty body is fine


def test_the_openapi_document_names_this_service(client: Any) -> None:  # noqa: ANN401
    """When the last assert fails, BentoML no longer writes its own contact and "None": re-check the patch."""
    from service.app import MNISTService
    from service.bentoml_internals import project_version

    info = client.get("/docs.json").json()["info"]
    assert (info["title"], info["version"]) == ("mnist-serve", project_version())
    assert "contact" not in info
    assert info["description"].startswith("MNIST digit classification")
    bentoml_own = openapi.generate_spec.__wrapped__(MNISTService).info
    assert (bentoml_own.title, bentoml_own.version, bentoml_own.contact.name) == ("mnist", "None", "BentoML Team")
