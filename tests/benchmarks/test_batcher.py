"""benchmarks.batcher drives the service's own batcher and reports what it measured."""

from __future__ import annotations

import asyncio
import gc

import pytest

from benchmarks import batcher


@pytest.mark.parametrize("cost", sorted(batcher.COST_MODELS))
def test_an_open_loop_through_the_batcher_answers_every_request(cost: str) -> None:
    result = asyncio.run(batcher.open_loop(cost, rate=400, seconds=0.5, request_us=100, max_latency_ms=1000))
    assert result.cost == cost
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms < 1000
    assert result.mean_batch >= 1.0
    assert gc.isenabled()  # switched off for the run only


def test_the_cost_models_are_the_measured_shapes() -> None:
    cpu, gpu = batcher.COST_MODELS["cpu"], batcher.COST_MODELS["gpu"]
    assert cpu(256) / cpu(1) > 40  # on the CPU a call grows with its images
    assert gpu(256) / gpu(1) < 2  # on the GPU it is mostly launch cost
    assert batcher.capacity("cpu", 300) < 1e6 / 300


def test_the_table_names_each_setting() -> None:
    row = batcher.Result("gpu", False, 0.1, 1656.0, 1.0, 2.0, 14.6, 1.3, 0.23)
    table = batcher.table([row], request_us=300)
    assert "| gpu | off | 0.1 | 1656 | 1.0 | 2.0 | 14.6 | 1.3 | 0.23 |" in table
