"""Every metric the service defines, in one place (BentoML serves them on /metrics with its own).

Each is made once per process, on first use (Prometheus refuses a second metric of the same name), through
`bentoml.metrics`, which puts them in BentoML's registry (multiprocess-safe with several workers).

| metric | type | recorded by |
|---|---|---|
| mnist_model_info{model,version,provider} | gauge, 1 | service/app.py, when a worker has loaded its model |
| mnist_requests_shed{route} | counter | service/batching.py, each 503 for a full queue (MNIST_MAX_QUEUE) |
| mnist_queue_wait_seconds | histogram | service/batching.py, each request's wait for its batch, every door |
| mnist_adaptive_batch_size | histogram | service/batching.py, requests per ONNX Runtime call |
| mnist_batch_seconds | histogram | service/batching.py, each batch's time in the predictor |
| mnist_gc_pause_seconds{generation} | histogram | service/gcpauses.py, each garbage collection |
"""

from __future__ import annotations

import functools
import math

import bentoml
from prometheus_client import Counter, Gauge, Histogram

GC_PAUSE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@functools.cache
def model_info_gauge() -> Gauge:
    return bentoml.metrics.Gauge(
        name="mnist_model_info",
        documentation="The served model and the ONNX Runtime execution provider actually in use (value 1)",
        labelnames=["model", "version", "provider"],
    )


@functools.cache
def shed_counter() -> Counter:
    return bentoml.metrics.Counter(
        name="mnist_requests_shed",
        documentation="Requests refused with 503 because the adaptive batcher's queue was full (MNIST_MAX_QUEUE)",
        labelnames=["route"],
    )


@functools.cache
def batch_size_histogram() -> Histogram:
    """Every door shares the batcher."""
    return bentoml.metrics.Histogram(
        name="mnist_adaptive_batch_size",
        documentation="Requests per ONNX Runtime call made by the adaptive batcher",
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
    Every door that runs the model goes through `Batcher.predict`, so this counts them all; autoscalers scale
    on its per-pod mean (deploy/k8s). With batching off a request never waits: 0 is recorded."""
    return bentoml.metrics.Histogram(
        name="mnist_queue_wait_seconds",
        documentation="Time a request waited in the adaptive batcher's queue before its batch ran, every door",
        buckets=[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, math.inf],
    )


@functools.cache
def gc_pause_histogram() -> Histogram:
    return bentoml.metrics.Histogram(
        name="mnist_gc_pause_seconds",
        documentation="Time the garbage collector stopped the worker, per collection, by generation",
        labelnames=["generation"],
        buckets=GC_PAUSE_BUCKETS,
    )
