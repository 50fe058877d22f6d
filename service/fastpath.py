"""The hot path: /predict and /predict_bytes served beside BentoML's per-request API layer, through its batcher.

Profiled under one-image load (docs/benchmarks.md, "Performance work on the service"), BentoML's API layer
(routing, the request context, serde and the generated IO models, a dispatcher wrapper built per request,
background tasks) took about half of each request's CPU, and a bare FastAPI app served twice the requests.
This middleware answers a request that validates with the very same pydantic models, batched by BentoML's
adaptive batcher (its CorkDispatcher, the algorithm `@bentoml.api(batchable=True)` uses), and writes the
same JSON.

Everything else stays BentoML's: the middlewares outside this one (request metrics, timeout, tracing, the
413/415 guard), readiness, the OpenAPI page and the other routes. A body this path cannot validate is replayed
to BentoML's route, so every error response comes from one place. MNIST_FAST_PATH=0 turns the path off.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import bentoml
import numpy as np
from bentoml._internal.marshal.dispatcher import CorkDispatcher
from bentoml.exceptions import BentoMLException
from prometheus_client import Histogram
from pydantic import ValidationError

from .batching import RequestContainer
from .guard import ASGIApp, Receive, Scope, Send, error_body, replay, send_error, send_json
from .predictor import RequestBatch, ResponseBatch
from .runtime import Activation
from .schemas import PixelRequest, PredictResponse
from .settings import Batching

log = logging.getLogger("service.fastpath")

UNEXPECTED = "An unexpected error has occurred, please check the server log."  # BentoML's own 500 text
_OVERLOADED = object()  # what the batcher returns for a request it dropped past its latency budget


@functools.cache
def batch_size_histogram() -> Histogram:
    """One per process (Prometheus refuses a second metric of the same name); both routes share the batcher."""
    return bentoml.metrics.Histogram(
        name="mnist_adaptive_batch_size",
        documentation="Requests per ONNX Runtime call made by the fast path's adaptive batcher",
        buckets=[*(2.0**i for i in range(13)), math.inf],
    )


class BatchPredictor(Protocol):
    """What the fast path needs of the core (service.predictor.Predictor)."""

    def predict_batch(self, batch: RequestBatch) -> ResponseBatch: ...

    def respond(self, pixels: np.ndarray, activation: Activation | None) -> PredictResponse: ...


class FastPredictor:
    """Validated request in, JSON bytes out: through the adaptive batcher, or inline when batching is off."""

    def __init__(self, routes: Mapping[str, type[PixelRequest]], predictor: BatchPredictor, batching: Batching) -> None:
        self.routes = dict(routes)
        self.predictor = predictor
        self.batching = batching
        self._infer: Callable | None = None
        if batching.enabled:
            # Wrapped once here (BentoML's route wraps its callback again for every request). One batcher for
            # both routes: JSON and binary requests share ONNX Runtime calls.
            self._infer = CorkDispatcher(
                max_latency_in_ms=batching.max_latency_ms,
                max_batch_size=batching.max_batch_size,
                fallback=lambda: _OVERLOADED,
                get_batch_size=lambda request: request.rows,
            )(self._run_batch)

    async def _run_batch(self, requests: Sequence[PixelRequest]) -> list[PredictResponse]:
        batch_size_histogram().observe(len(requests))
        batch, _ = RequestContainer.batches_to_batch(requests)
        return self.predictor.predict_batch(batch).responses

    async def answer(self, route: str, body: bytes) -> tuple[int, bytes] | None:
        """(status, JSON body), or None when the body does not validate: BentoML's route then answers it."""
        try:
            request = self.routes[route].model_validate_json(body)
        except ValidationError:
            return None
        if self._infer is None:
            response = self.predictor.respond(request.pixels, request.activation)
        else:
            response = await self._infer(request)
            if response is _OVERLOADED:
                limit = self.batching.max_latency_ms
                return 503, error_body(f"overloaded: the request waited past the batching budget of {limit} ms; retry")
        return 200, PredictResponse.__pydantic_serializer__.to_json(response)


class FastPath:
    """ASGI middleware: POSTs to the predictor's routes go to `bentoml.get_current_service().fast_predictor`."""

    def __init__(self, app: ASGIApp, routes: Sequence[str]) -> None:
        self.app = app
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.routes:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away
        try:
            predictor: FastPredictor | None = bentoml.get_current_service().fast_predictor
        except BentoMLException:  # not started yet: BentoML's route answers as it would
            predictor = None
        try:
            answer = None if predictor is None else await predictor.answer(scope["path"], body)
        except Exception:
            log.exception("POST %s failed", scope["path"])
            await send_error(send, 500, UNEXPECTED)
            return
        if answer is None:
            await self.app(scope, replay(body, receive), send)
            return
        await send_json(send, *answer)


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
