"""Every use of BentoML internals (pinned 1.4.39), in this one module, each with its reason and a canary test in
tests/service/test_bentoml_internals.py that fails when BentoML moves or changes what it relies on. `install()`
applies the process-wide ones; service/app.py calls it before BentoML builds the app. The rest are classes
used by name.

- CancellingTimeoutMiddleware replaces `bentoml._internal.server.http.traffic.TimeoutMiddleware` (a timer leak).
- RecoveringCorkDispatcher: BentoML's adaptive batcher, whose learned wait is forgotten after an idle gap.
- RequestContainer and ResponseContainer: BentoML's batcher batches (and splits) whole requests through its
  data container registry.
- require_request_bodies and name_the_openapi_document: the OpenAPI document.

The timeout fix, applied before BentoML builds the app; drop it (and only it) when upstream has it.

BentoML's TimeoutMiddleware arms `loop.call_later(timeout, ...)` for every request and never cancels it, so
each request leaves a timer, a future and a context alive for `traffic.timeout` seconds (30 here): ~75,000
live timers at 2,500 requests/s. They all reach the oldest garbage-collector generation, whose collections
then took 40-80 ms: the one-image p99 at 64 users was 80-90 ms with the leak and 35 ms without (measured
side by side with loadtests/quick; docs/benchmarks.md, "The timer leak"). The fix cancels the timer once the
response has started, and runs the app in the request's own task; timeouts still answer 504 as before.
tests/service/test_bentoml_internals.py fails when the pinned class stops leaking: the signal to delete
CancellingTimeoutMiddleware (the other uses stay).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import numpy as np
from _bentoml_sdk.method import APIMethod
from _bentoml_sdk.service import openapi
from bentoml._internal.marshal.dispatcher import CorkDispatcher
from bentoml._internal.runner.container import DataContainer, DataContainerRegistry
from bentoml._internal.server.http import traffic

from .predictor import RequestBatch, ResponseBatch
from .schemas import PixelRequest, PredictResponse

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


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
    """Idempotent. BentoML imports TimeoutMiddleware from `traffic` each time it builds an app, so the fix
    applies to every app built after this (tests/service/test_app.py checks the built app's stack)."""
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware
    register_containers()
    require_request_bodies()
    name_the_openapi_document()


class RecoveringCorkDispatcher(CorkDispatcher):
    """BentoML's adaptive batcher, which forgets its learned wait after an idle gap.

    CorkDispatcher holds a request back while `n * (age of the newest + 1 ms) <= 0.95 * optimizer.wait`,
    and `optimizer.wait` is the mean time the last 50 batches' first requests waited. Under overload those
    waits are the backlog's (up to the latency budget), and afterwards every lone request is held that long,
    which is logged as its wait: the estimate feeds itself and decays only with traffic (an idle request took
    70 ms after a 4x overload, 16 ms after a capacity run, 2.1 ms on a fresh server). When a request arrives
    to an empty queue after more than IDLE_RESET_S of silence there is no batch to wait for, so the learned
    wait is forgotten; under load (arrivals closer than that) the algorithm is BentoML's, unchanged.
    Checked against BentoML 1.4.39 (tests/service/test_bentoml_internals.py fails if `optimizer.wait`, `o_stat` or
    `inbound_call` move).
    """

    IDLE_RESET_S = 0.5

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_arrival = float("-inf")

    def forget_wait(self) -> None:
        self.optimizer.wait = 0
        self.optimizer.o_stat = type(self.optimizer.o_stat)(
            ((n, duration, 0.0) for n, duration, _ in self.optimizer.o_stat), maxlen=self.optimizer.o_stat.maxlen
        )

    def forget_wait_if_idle(self, now: float) -> None:
        if not self._queue and now - self._last_arrival > self.IDLE_RESET_S and self.optimizer.wait:
            self.forget_wait()
        self._last_arrival = now

    async def inbound_call(self, data: Any) -> Any:
        self.forget_wait_if_idle(time.monotonic())
        return await super().inbound_call(data)


def require_request_bodies() -> None:
    """BentoML's OpenAPI document leaves `requestBody.required` out, and OpenAPI's default is false, so the
    document says /predict may be sent without a body (schemathesis sent one; it is a 400). Mark the body
    required wherever the input has required fields. Checked against BentoML 1.4.39 (`APIMethod.openapi_request`
    returns {"content": ...}; tests/service/test_bentoml_internals.py fails when it sets `required` itself)."""
    original = APIMethod.openapi_request
    if getattr(original, "requires_body", False):
        return

    def openapi_request(self: APIMethod) -> dict[str, Any]:
        body = original(self)
        if self.input_spec.model_json_schema().get("required"):
            body["required"] = True
        return body

    openapi_request.requires_body = True  # type: ignore[attr-defined]
    openapi_request.__wrapped__ = original  # type: ignore[attr-defined]
    APIMethod.openapi_request = openapi_request  # type: ignore[method-assign]


def name_the_openapi_document() -> None:
    """BentoML titles the OpenAPI document with the service's BentoML name, versions it "None" outside a
    built bento, describes it with BentoML's boilerplate README (badges, community links) and gives BentoML's
    own team as its contact. Title it with the project and the running package's version, describe it with
    the service class's docstring, and drop the contact, which is not this service's. Checked against BentoML 1.4.39
    (`_bentoml_sdk.service.openapi.generate_spec`, imported by `Service.openapi_spec` at each call;
    tests/service/test_bentoml_internals.py fails when that changes)."""
    original = openapi.generate_spec
    if getattr(original, "names_document", False):
        return

    def generate_spec(svc: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - BentoML's types
        spec = original(svc, **kwargs)
        description = inspect.getdoc(svc.inner) or spec.info.description  # the service class's docstring
        info = attrs.evolve(spec.info, title=PROJECT, version=project_version(), description=description, contact=None)
        return attrs.evolve(spec, info=info)

    generate_spec.names_document = True  # type: ignore[attr-defined]
    generate_spec.__wrapped__ = original  # type: ignore[attr-defined]
    openapi.generate_spec = generate_spec


PROJECT = "mnist-serve"


def project_version() -> str:
    try:
        return importlib.metadata.version(PROJECT)
    except importlib.metadata.PackageNotFoundError:  # a bento: the source without the installed package
        return "unreleased"


# Batching whole requests. Teach BentoML's adaptive batcher to batch whole requests, not bare arrays.
#
# BentoML batches a batchable API's single argument with a "data container" chosen by its type; the built-in
# ones cover arrays, tensors, DataFrames and lists. Our argument is a validated request (pixels plus the
# caller's choice of activation), and our answer carries the model's name and version, so we register a
# container pair for them. Counting is in images: `max_batch_size` caps the rows of one ONNX Runtime call, and
# the batcher splits a request that would overflow it (`slice_rows`) and merges the answers
# (`ResponseContainer.batches_to_batch`).


class InProcessContainer(DataContainer):
    """Our batches never cross a process boundary (no runner), so they have no wire format."""

    @classmethod
    def to_payload(cls, batch, batch_dim: int):  # noqa: ANN001, ANN206
        raise NotImplementedError(f"{cls.__name__} batches in-process only")

    @classmethod
    def from_payload(cls, payload):  # noqa: ANN001, ANN206
        raise NotImplementedError(f"{cls.__name__} batches in-process only")


class RequestContainer(InProcessContainer, DataContainer[PixelRequest, RequestBatch]):
    @classmethod
    def batches_to_batch(cls, batches: Sequence[PixelRequest], batch_dim: int = 0) -> tuple[RequestBatch, list[int]]:
        pixels = batches[0].pixels if len(batches) == 1 else np.concatenate([r.pixels for r in batches])
        batch = RequestBatch(pixels, [r.rows for r in batches], [r.activation for r in batches])
        return batch, list(range(len(batches) + 1))  # output boundaries: one response per request

    @classmethod
    def batch_to_batches(cls, batch: PixelRequest, indices: Sequence[int], batch_dim: int = 0) -> list[PixelRequest]:
        return [batch.slice_rows(start, stop) for start, stop in zip(indices[:-1], indices[1:], strict=True)]

    @classmethod
    def get_batch_size(cls, batch: PixelRequest, batch_dim: int) -> int:
        return batch.rows


class ResponseContainer(InProcessContainer, DataContainer[PredictResponse, ResponseBatch]):
    @classmethod
    def batch_to_batches(
        cls, batch: ResponseBatch, indices: Sequence[int], batch_dim: int = 0
    ) -> list[PredictResponse]:
        if len(batch.responses) != len(indices) - 1:
            raise RuntimeError(f"{len(batch.responses)} responses for {len(indices) - 1} requests")
        return batch.responses

    @classmethod
    def batches_to_batch(
        cls, batches: Sequence[PredictResponse], batch_dim: int = 0
    ) -> tuple[PredictResponse, list[int]]:
        """Merge the answers to the parts of a request the batcher split."""
        merged = batches[0].model_copy(update={"predictions": [p for b in batches for p in b.predictions]})
        return merged, [0, len(merged.predictions)]

    @classmethod
    def get_batch_size(cls, batch: PredictResponse, batch_dim: int) -> int:
        return len(batch.predictions)


def register_containers() -> None:
    """Idempotent: BentoML looks containers up by the type of what it batches, subclasses included."""
    DataContainerRegistry.register_container(PixelRequest, PixelRequest, RequestContainer)
    DataContainerRegistry.register_container(PredictResponse, ResponseBatch, ResponseContainer)
    DataContainerRegistry.register_container(PredictResponse, PredictResponse, ResponseContainer)
