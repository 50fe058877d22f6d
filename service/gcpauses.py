"""Garbage-collector pauses as a Prometheus histogram (`mnist_gc_pause_seconds{generation}`).

A collection stops the event loop, every request in it included. In `python -m benchmarks.batcher` (the
batcher alone, at the same loads) p99 was 1.6-2.3 ms with the collector off and 33-65 ms in 5 of 12 runs
with it on, whatever the model's cost: pauses are the first suspect when the tail is far above what the model
and the batcher take (issue 10's 96 ms on a GPU). With this histogram on /metrics, an operator reads them
beside the latency instead of guessing.
"""

from __future__ import annotations

import functools
import gc
import time
from collections.abc import Callable
from typing import Any

import bentoml

BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@functools.cache
def pause_histogram():  # noqa: ANN201 - a prometheus_client Histogram
    """One per process (Prometheus refuses a second metric of the same name)."""
    return bentoml.metrics.Histogram(
        name="mnist_gc_pause_seconds",
        documentation="Time the garbage collector stopped the worker, per collection, by generation",
        labelnames=["generation"],
        buckets=BUCKETS,
    )


class PauseTimer:
    """A `gc.callbacks` entry: times each collection and hands (generation, seconds) to `observe`."""

    def __init__(self, observe: Callable[[int, float], None]) -> None:
        self.observe = observe
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.observe(info["generation"], time.perf_counter() - self._started)


def watch_gc_pauses() -> PauseTimer:
    """Record every collection's pause in `pause_histogram()`, once per process however often called."""
    for callback in gc.callbacks:
        if isinstance(callback, PauseTimer):
            return callback
    children = [pause_histogram().labels(generation=str(g)) for g in range(3)]  # bound once: no lookup per pause
    timer = PauseTimer(lambda generation, seconds: children[generation].observe(seconds))
    gc.callbacks.append(timer)
    return timer
