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


@pytest.mark.parametrize("cost", sorted(batcher.COST_MODELS))
def test_each_cost_model_is_a_line_through_the_figures_it_quotes(cost: str) -> None:
    """The formulas are not measurements: they are fitted to quoted figures, and stay within 20% of each."""
    for images, us in batcher.FITTED_TO[cost].items():
        assert batcher.COST_MODELS[cost](images) == pytest.approx(us, rel=0.2), (cost, images)


def test_capacity_counts_each_requests_own_work_and_its_share_of_a_call() -> None:
    assert batcher.capacity("cpu", 300) == pytest.approx(1e6 / (300 + (50 + 9.5 * 64) / 64))


def test_the_table_names_each_setting() -> None:
    row = batcher.Result("gpu", False, 0.1, 1656.0, 1.0, 2.0, 14.6, 1.3, 0.23)
    table = batcher.table([row], request_us=300)
    assert "| gpu | off | 0.1 | 1656 | 1.0 | 2.0 | 14.6 | 1.3 | 0.23 |" in table
    assert "A simulation" in table  # and says so
