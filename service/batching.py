"""Batching: every door's one way to the model. It knows validated requests and responses, not paths or bodies.

- Admission (`Batcher.admitted`): past MNIST_MAX_QUEUE requests admitted and not yet answered, a new one is
  refused at once with 503 and Retry-After instead of waiting behind a backlog it cannot beat. Every door that
  runs the model (JSON rows, bytes, uploads, v2 infer) enters here before it decodes anything.
- The adaptive batcher (`Batcher.predict`): BentoML's CorkDispatcher, the algorithm `@bentoml.api(batchable=True)`
  uses, wrapped once (service/bentoml_internals.py: it forgets its learned wait after an idle gap, and batches
  whole requests); requests waiting together are stacked into one ONNX Runtime call of up to
  MNIST_MAX_BATCH_SIZE images, and a request waiting past MNIST_MAX_LATENCY_MS gets 503. With batching off,
  each request is its own call, inline.
- The batch metrics (service/metrics.py) and Triton's statistics (service/stats.py).

Why the service batches here rather than through BentoML's API layer: profiled under one-image load
(docs/benchmarks.md, "Performance work on the service"), BentoML's per-request API layer (routing, the request
context, serde and the generated IO models, a dispatcher wrapper built per request, background tasks) took about
half of each request's CPU, and a bare FastAPI app served twice the requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from .bentoml_internals import RecoveringCorkDispatcher, RequestContainer
from .errors import ClientError
from .metrics import batch_seconds_histogram, batch_size_histogram, queue_wait_histogram, shed_counter
from .predictor import RequestBatch, ResponseBatch
from .schemas import PixelRequest, PredictResponse
from .settings import Batching
from .stats import ModelStatistics

RETRY_AFTER_S = 1  # what a shed request is told; a batch takes milliseconds, so the queue drains well within it
_OVERLOADED = object()  # what the batcher returns for a request it dropped past its latency budget


class BatchPredictor(Protocol):
    """What the batcher needs of the core (service.predictor.Predictor)."""

    def predict_batch(self, batch: RequestBatch) -> ResponseBatch: ...


class Admission:
    """What `Batcher.admitted` returns: leaving the `with` gives the admitted request's place back. One per
    batcher, reused by every request (a generator-based context manager cost 0.8 us a request, 1% of json-1)."""

    __slots__ = ("release",)

    def __init__(self, release: Callable[[], None]) -> None:
        self.release = release

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc: object) -> None:
        self.release()


class Batcher:
    """Validated request in, response out: admitted, then through the adaptive batcher (inline when off)."""

    def __init__(self, predictor: BatchPredictor, batching: Batching) -> None:
        self.predictor = predictor
        self.batching = batching
        self._infer: Callable | None = None
        self._queued = 0
        self._admission = Admission(self._release)
        self.stats = ModelStatistics()  # this worker's, for Triton's statistics extension (GET /v2/.../stats)
        if batching.enabled:
            # Wrapped once here (BentoML's route wraps its callback again for every request). One batcher for
            # every door: JSON, binary, uploads and v2 requests share ONNX Runtime calls.
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
        """Every door's admission, before it decodes anything (shedding must cost less than serving): refused at
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
