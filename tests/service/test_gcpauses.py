from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from service.gcpauses import PauseTimer, watch_gc_pauses
from tests.conftest import REPO


def test_a_collection_is_noted_with_its_generation_and_drained_once() -> None:
    timer = PauseTimer()
    gc.callbacks.append(timer)
    try:
        gc.collect(1)
    finally:
        gc.callbacks.remove(timer)
    noted = timer.drain()
    assert noted
    generation, seconds = noted[-1]
    assert generation == 1
    assert 0.0 <= seconds < 5.0
    assert timer.drain() == []


def test_pauses_are_watched_once_per_process() -> None:
    first = watch_gc_pauses()
    assert watch_gc_pauses() is first
    assert sum(isinstance(c, PauseTimer) for c in gc.callbacks) == 1
    assert first.flushing_pid == os.getpid()
    assert sum(t.name == "gc-pause-metrics" for t in threading.enumerate()) == 1


def test_a_forked_worker_flushes_its_own_pauses() -> None:
    read, write = os.pipe()
    watch_gc_pauses()
    pid = os.fork()
    if pid == 0:  # the child: the callback came with the fork, the flushing thread did not
        timer = watch_gc_pauses()
        threads = sum(t.name == "gc-pause-metrics" for t in threading.enumerate())
        os.write(write, f"{timer.flushing_pid == os.getpid()} {threads}".encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 100).decode() == "True 1"


def test_collections_inside_prometheus_multiprocess_writes_do_not_deadlock(tmp_path: Path) -> None:
    """A collection can start while prometheus_client holds its (not reentrant) multiprocess lock, as it does
    while it sets up a new label set: observing from the gc callback then waited on that lock forever (this
    script hung with the first version). Collections are forced every few allocations here."""
    script = textwrap.dedent(
        """
        import gc
        import prometheus_client
        from service import gcpauses

        gcpauses.FLUSH_EVERY_S = 0.001  # the flushing thread writes too, alongside the main thread
        gcpauses.watch_gc_pauses()
        busy = prometheus_client.Histogram("busy_seconds", "label sets set up under the lock", ["n"])
        gc.set_threshold(1, 1, 1)  # a collection every few allocations, some inside the locked set-up
        for i in range(1_000):
            busy.labels(str(i)).observe(1e-6)
        print("done")
        """
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("done")
