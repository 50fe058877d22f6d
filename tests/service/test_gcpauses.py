from __future__ import annotations

import gc

from service.gcpauses import PauseTimer, watch_gc_pauses


def test_a_collection_is_timed_with_its_generation() -> None:
    seen: list[tuple[int, float]] = []
    timer = PauseTimer(lambda generation, seconds: seen.append((generation, seconds)))
    gc.callbacks.append(timer)
    try:
        gc.collect(1)
    finally:
        gc.callbacks.remove(timer)
    assert seen
    generation, seconds = seen[-1]
    assert generation == 1
    assert 0.0 <= seconds < 5.0


def test_pauses_are_watched_once_per_process() -> None:
    first = watch_gc_pauses()
    assert watch_gc_pauses() is first
    assert sum(isinstance(c, PauseTimer) for c in gc.callbacks) == 1
