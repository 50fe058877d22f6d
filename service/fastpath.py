"""The hot path: /predict and /predict_bytes answered beside BentoML's per-request API layer, through its batcher.

Profiled under one-image load (docs/benchmarks.md, "Performance work on the service"), BentoML's API layer
(routing, the request context, serde and the generated IO models, a dispatcher wrapper built per request,
background tasks) took about half of each request's CPU, and a bare FastAPI app served twice the requests.
`FastPredictor` answers a request validated with the very same pydantic models (by service/doors.py),
batched by BentoML's adaptive batcher (its CorkDispatcher, the algorithm `@bentoml.api(batchable=True)`
uses), and writes the same JSON. It also bounds the batcher's queue: past MNIST_MAX_QUEUE requests, a new
one is refused at once with 503 and Retry-After instead of waiting behind a backlog it cannot beat.
MNIST_FAST_PATH=0 hands both routes back to BentoML's API layer.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import bentoml
import numpy as np
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from .compat import RecoveringCorkDispatcher, RequestContainer
from .errors import ClientError
from .predictor import RequestBatch, ResponseBatch
from .runtime import Activation
from .schemas import PixelRequest, PredictResponse
from .settings import Batching

RETRY_AFTER_S = 1  # what a shed request is told; a batch takes milliseconds, so the queue drains well within it
_OVERLOADED = object()  # what the batcher returns for a request it dropped past its latency budget


@functools.cache
def shed_counter() -> Counter:
    return bentoml.metrics.Counter(
        name="mnist_requests_shed",
        documentation="Requests refused with 503 because the adaptive batcher's queue was full (MNIST_MAX_QUEUE)",
        labelnames=["route"],
    )


@functools.cache
def batch_size_histogram() -> Histogram:
    """One per process (Prometheus refuses a second metric of the same name); both routes share the batcher."""
    return bentoml.metrics.Histogram(
        name="mnist_adaptive_batch_size",
        documentation="Requests per ONNX Runtime call made by the fast path's adaptive batcher",
        buckets=[*(2.0**i for i in range(13)), math.inf],
    )


@functools.cache
def batch_seconds_histogram() -> Histogram:
    """How long each batch takes in the predictor core: a model whose calls stall (a GPU's, say) shows here
    before anything else, apart from the time requests wait in HTTP and in the queue."""
    return bentoml.metrics.Histogram(
        name="mnist_batch_seconds",
        documentation="Time of one adaptive batch in the predictor core: ONNX Runtime call, probabilities, responses",
        buckets=[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, math.inf],
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
        self._queued = 0
        if batching.enabled:
            # Wrapped once here (BentoML's route wraps its callback again for every request). One batcher for
            # both routes: JSON and binary requests share ONNX Runtime calls.
            self._infer = RecoveringCorkDispatcher(
                max_latency_in_ms=batching.max_latency_ms,
                max_batch_size=batching.max_batch_size,
                fallback=lambda: _OVERLOADED,
                get_batch_size=lambda request: request.rows,
            )(self._run_batch)

    async def _run_batch(self, requests: Sequence[PixelRequest]) -> list[PredictResponse]:
        batch_size_histogram().observe(len(requests))
        batch, _ = RequestContainer.batches_to_batch(requests)
        started = time.perf_counter()
        responses = self.predictor.predict_batch(batch).responses
        batch_seconds_histogram().observe(time.perf_counter() - started)
        return responses

    @property
    def queued(self) -> int:
        """Requests waiting for, or in, an ONNX Runtime call of the batcher."""
        return self._queued

    def admit(self, route: str) -> None:
        """Refuse at once (503 + Retry-After) when the queue is full: a request admitted past it would only
        wait longer than the latency budget, and its wait would slow every request behind it."""
        if self._queued >= self.batching.max_queue:
            shed_counter().labels(route=route).inc()
            raise overloaded(f"{self._queued} requests are queued (MNIST_MAX_QUEUE={self.batching.max_queue})")

    async def respond(self, route: str, body: bytes) -> bytes:
        """A request body -> the JSON body of its 200, or ClientError: 503 when full, 400 naming the field."""
        self.admit(route)  # before parsing anything: shedding must cost less than serving
        try:
            request = self.routes[route].model_validate_json(body)
        except ValidationError as exc:
            raise ClientError.from_validation(exc) from None
        return await self.answer(request)

    async def answer(self, request: PixelRequest) -> bytes:
        """A validated request -> the JSON body of its 200 (or ClientError 503 when the batcher dropped it)."""
        return PredictResponse.__pydantic_serializer__.to_json(await self.predict(request))

    async def predict(self, request: PixelRequest) -> PredictResponse:
        """A validated request -> its response, through the batcher (ClientError 503 when it dropped it)."""
        if self._infer is None:
            response = self.predictor.respond(request.pixels, request.activation)
        else:
            self._queued += 1
            try:
                response = await self._infer(request)
            finally:
                self._queued -= 1
            if response is _OVERLOADED:
                raise overloaded(f"the request waited past the batching budget of {self.batching.max_latency_ms} ms")
        return response


def overloaded(reason: str) -> ClientError:
    """503 with Retry-After: the two ways a request is turned away for load."""
    return ClientError(
        503, f"overloaded: {reason}; retry after {RETRY_AFTER_S} s", headers={"retry-after": str(RETRY_AFTER_S)}
    )
