"""Garbage-collector pauses as a Prometheus histogram (`mnist_gc_pause_seconds{generation}`, service/metrics.py).

A collection stops the event loop, every request in it included. In `python -m benchmarks.batcher` (the
batcher alone, same loads and settings) p99 was 1.6-3.2 ms with the collector off and 35-61 ms in 4 of 12
settings with it on, whatever the model's cost (docs/benchmarks.md): pauses are the first suspect when the
tail is far above what the model and the batcher take (issue 10's 96 ms on a GPU). With this histogram on
/metrics an operator reads them beside the latency instead of guessing.

The collector's callback runs wherever a collection starts, inside prometheus_client too, whose multiprocess
values write under a lock that is not reentrant: observing from the callback deadlocked a worker (the test
suite hung on it). So the callback only notes (generation, seconds) in a deque, and a daemon thread hands
them to the histogram once a second, from outside any collection.
"""

from __future__ import annotations

import collections
import gc
import os
import threading
import time
from typing import Any

from .metrics import gc_pause_histogram

FLUSH_EVERY_S = 1.0


class PauseTimer:
    """A `gc.callbacks` entry that times each collection and only notes it: no lock, no call into a library."""

    def __init__(self) -> None:
        self.pending: collections.deque[tuple[int, float]] = collections.deque(maxlen=100_000)
        self.flushing_pid = 0  # the process whose thread drains `pending`
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pending.append((info["generation"], time.perf_counter() - self._started))

    def drain(self) -> list[tuple[int, float]]:
        """The pauses noted since the last drain, oldest first."""
        drained = []
        while self.pending:
            drained.append(self.pending.popleft())
        return drained


def watch_gc_pauses() -> PauseTimer:
    """Time every collection into `gc_pause_histogram()` (within FLUSH_EVERY_S), once per process however often
    called; a forked child, which inherits the callback but not the thread, gets a thread of its own."""
    timer = next((c for c in gc.callbacks if isinstance(c, PauseTimer)), None)
    if timer is None:
        timer = PauseTimer()
        gc.callbacks.append(timer)
    if timer.flushing_pid != os.getpid():
        timer.flushing_pid = os.getpid()
        threading.Thread(target=flush_forever, args=(timer,), name="gc-pause-metrics", daemon=True).start()
    return timer


def flush_forever(timer: PauseTimer) -> None:
    """Hand the noted pauses to the histogram every FLUSH_EVERY_S, from this thread, never from a callback."""
    children = [gc_pause_histogram().labels(generation=str(g)) for g in range(3)]  # bound once: no lookup per pause
    while True:
        time.sleep(FLUSH_EVERY_S)
        for generation, seconds in timer.drain():
            children[generation].observe(seconds)
