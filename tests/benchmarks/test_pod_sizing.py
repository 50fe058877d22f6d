"""benchmarks.pod_sizing counts a pod's whole process tree, as a container's cgroup does, and reads the queue
wait from the same text Prometheus scrapes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from benchmarks import pod_sizing

HOLD_MIB = 64
CHILD = f"import sys, time; block = bytearray({HOLD_MIB} * 2**20); print('held', flush=True); time.sleep(30)"


def test_a_childs_memory_counts_in_the_tree_and_in_its_peak() -> None:
    before_rss, _ = pod_sizing.tree_memory(os.getpid())
    with pod_sizing.peak_memory(os.getpid(), every_s=0.05) as peak:
        child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "held"  # bytearray() writes its zeros: resident
            during_rss, during_pss = pod_sizing.tree_memory(os.getpid())
            time.sleep(0.2)  # a few of the sampler's rounds
        finally:
            child.kill()
            child.wait()
    assert during_rss - before_rss > 0.8 * HOLD_MIB
    assert during_pss > 0.8 * HOLD_MIB
    assert peak.rss - before_rss > 0.8 * HOLD_MIB  # the sampler saw the child too


def test_queue_wait_totals_are_read_from_the_exposition_format() -> None:
    registry = CollectorRegistry()
    histogram = Histogram(pod_sizing.QUEUE_WAIT, "queue wait", registry=registry)
    other = Histogram("mnist_queue_wait_seconds_other", "a name that extends it", registry=registry)
    for seconds in (0.001, 0.004):
        histogram.observe(seconds)
    other.observe(7.0)
    text = generate_latest(registry).decode()
    assert pod_sizing.histogram_totals(text, pod_sizing.QUEUE_WAIT) == pytest.approx((0.005, 2.0))
    assert pod_sizing.histogram_totals("", pod_sizing.QUEUE_WAIT) == (0.0, 0.0)  # no request yet
