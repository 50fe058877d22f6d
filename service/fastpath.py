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
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from .compat import RecoveringCorkDispatcher, RequestContainer
from .errors import ClientError
from .predictor import RequestBatch, ResponseBatch
from .schemas import PixelRequest, PredictResponse
from .settings import Batching
from .stats import ModelStatistics

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


@functools.cache
def queue_wait_histogram() -> Histogram:
    """The signal that means busy, as Triton's queue time: how long each request waited for its batch to start.
    Every door that runs the model goes through `FastPredictor.predict`, so this counts them all; autoscalers
    scale on its per-pod mean (deploy/k8s). With batching off a request never waits: 0 is recorded."""
    return bentoml.metrics.Histogram(
        name="mnist_queue_wait_seconds",
        documentation="Time a request waited in the adaptive batcher's queue before its batch ran, every door",
        buckets=[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, math.inf],
    )


class BatchPredictor(Protocol):
    """What the fast path needs of the core (service.predictor.Predictor)."""

    def predict_batch(self, batch: RequestBatch) -> ResponseBatch: ...


class Admission:
    """What `FastPredictor.admitted` returns: leaving the `with` gives the admitted request's place back. One per
    batcher, reused by every request (a generator-based context manager cost 0.8 us a request, 1% of json-1)."""

    __slots__ = ("release",)

    def __init__(self, release: Callable[[], None]) -> None:
        self.release = release

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc: object) -> None:
        self.release()


class FastPredictor:
    """Validated request in, JSON bytes out: through the adaptive batcher, or inline when batching is off."""

    def __init__(self, routes: Mapping[str, type[PixelRequest]], predictor: BatchPredictor, batching: Batching) -> None:
        self.routes = dict(routes)
        self.predictor = predictor
        self.batching = batching
        self._infer: Callable | None = None
        self._queued = 0
        self._admission = Admission(self._release)
        self.stats = ModelStatistics()  # this worker's, for Triton's statistics extension (GET /v2/.../stats)
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
        started = time.perf_counter()
        batch_size_histogram().observe(len(requests))
        waited, queued = queue_wait_histogram(), 0.0
        for request in requests:
            wait = started - request.queued_at
            waited.observe(wait)
            queued += wait
        responses = self._execute(requests, started, queued)
        batch_seconds_histogram().observe(time.perf_counter() - started)
        return responses

    def _execute(self, requests: Sequence[PixelRequest], started: float, queued: float) -> list[PredictResponse]:
        """One ONNX Runtime call for `requests`, which waited `queued` seconds in all, timed in Triton's steps
        for the statistics: stacking the rows, the model call, the responses."""
        batch, _ = RequestContainer.batches_to_batch(requests)
        stacked = time.perf_counter()
        result = self.predictor.predict_batch(batch)
        built = time.perf_counter() - stacked - result.infer_seconds
        self.stats.executed(len(batch.pixels), len(requests), queued, stacked - started, result.infer_seconds, built)
        return result.responses

    @property
    def queued(self) -> int:
        """Requests admitted and not yet answered: being decoded, waiting for, or in, an ONNX Runtime call."""
        return self._queued

    def admitted(self, route: str) -> Admission:
        """Every door's admission, before it parses anything (shedding must cost less than serving): refused at
        once (503 + Retry-After) when MNIST_MAX_QUEUE requests are already admitted, since one more would only
        wait past the latency budget and slow every request behind it; counted until answered otherwise.
        Use it as `with batcher.admitted(route): ...`: the count is taken here and given back on leaving."""
        if self._queued >= self.batching.max_queue:
            shed_counter().labels(route=route).inc()
            raise overloaded(f"{self._queued} requests are queued (MNIST_MAX_QUEUE={self.batching.max_queue})")
        self._queued += 1
        return self._admission

    def _release(self) -> None:
        self._queued -= 1

    async def respond(self, route: str, body: bytes) -> bytes:
        """A request body -> the JSON body of its 200, or ClientError: 503 when full, 400 naming the field."""
        with self.admitted(route):
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
        started = time.perf_counter()
        try:
            if self._infer is None:
                queue_wait_histogram().observe(0.0)
                (response,) = self._execute([request], started, 0.0)
            else:
                request.mark_queued()
                response = await self._infer(request)
                if response is _OVERLOADED:
                    budget = self.batching.max_latency_ms
                    raise overloaded(f"the request waited past the batching budget of {budget} ms")
        except BaseException:  # dropped, failed, or cancelled when its client went away: no answer
            self.stats.failed(time.perf_counter() - started)
            raise
        self.stats.answered(request.rows, time.perf_counter() - started)
        return response


def overloaded(reason: str) -> ClientError:
    """503 with Retry-After: the two ways a request is turned away for load."""
    return ClientError(
        503, f"overloaded: {reason}; retry after {RETRY_AFTER_S} s", headers={"retry-after": str(RETRY_AFTER_S)}
    )
