"""The statistics collector on its own: what each record adds, and the JSON Triton's tools read."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.stats import ModelStatistics
from tests.service.test_batching import StandIn, answer, body, predictor

MS = 1_000_000  # nanoseconds


def test_nothing_recorded_reads_as_zeros_in_tritons_shape() -> None:
    """Every field perf_analyzer reads is present (it reads cache_hit and cache_miss too, and stops on a
    missing member), as integers."""
    report = ModelStatistics().as_triton("default", "1")
    assert (report["name"], report["version"]) == ("default", "1")
    assert (report["inference_count"], report["execution_count"], report["last_inference"]) == (0, 0, 0)
    assert set(report["inference_stats"]) == {
        "success",
        "fail",
        "queue",
        "compute_input",
        "compute_infer",
        "compute_output",
        "cache_hit",
        "cache_miss",
    }
    assert all(stat == {"count": 0, "ns": 0} for stat in report["inference_stats"].values())
    assert (report["batch_stats"], report["response_stats"], report["memory_usage"]) == ([], {}, [])


def test_an_execution_charges_each_request_with_its_batch_and_counts_the_batch_once() -> None:
    stats = ModelStatistics()
    before = time.time_ns() // MS
    stats.executed(images=5, requests=3, queued_s=0.006, input_s=0.001, infer_s=0.002, output_s=0.003)
    report = stats.as_triton("default", "1")
    inference = report["inference_stats"]
    assert inference["queue"] == {"count": 3, "ns": 6 * MS}  # the three requests' own waits, summed
    assert inference["compute_input"] == {"count": 3, "ns": 3 * MS}  # each request charged the whole batch
    assert inference["compute_infer"] == {"count": 3, "ns": 6 * MS}
    assert inference["compute_output"] == {"count": 3, "ns": 9 * MS}
    assert report["execution_count"] == 1
    assert report["batch_stats"] == [
        {
            "batch_size": 5,
            "compute_input": {"count": 1, "ns": 1 * MS},
            "compute_infer": {"count": 1, "ns": 2 * MS},
            "compute_output": {"count": 1, "ns": 3 * MS},
        }
    ]
    assert before <= report["last_inference"] <= time.time_ns() // MS
    assert report["inference_count"] == 0  # images count once their requests are answered


def test_batches_are_kept_by_size_in_order() -> None:
    stats = ModelStatistics()
    for images in (8, 1, 8, 2):
        stats.executed(images, 1, 0.0, 0.0, 0.001, 0.0)
    batches = stats.as_triton("m", "1")["batch_stats"]
    assert [(b["batch_size"], b["compute_infer"]["count"]) for b in batches] == [(1, 1), (2, 1), (8, 2)]
    assert stats.as_triton("m", "1")["execution_count"] == 4


@pytest.mark.parametrize(("answered", "failed"), [(2, 0), (0, 1), (3, 2)])
def test_answers_and_failures_are_counted_apart(answered: int, failed: int) -> None:
    stats = ModelStatistics()
    for _ in range(answered):
        stats.answered(images=4, seconds=0.010)
    for _ in range(failed):
        stats.failed(seconds=1.5)
    inference = stats.as_triton("m", "1")["inference_stats"]
    assert inference["success"] == {"count": answered, "ns": answered * 10 * MS}
    assert inference["fail"] == {"count": failed, "ns": failed * 1500 * MS}
    assert stats.as_triton("m", "1")["inference_count"] == 4 * answered


def test_the_batcher_counts_answers_drops_and_executions() -> None:
    """Through the batcher with a model slower than the budget: every request that reached it is either a
    success or a failure, and only answered images count as inferences."""
    model = StandIn(delay=0.05)
    fast = predictor(model, max_batch_size=2, max_latency_ms=10)

    async def run() -> list[tuple[int, bytes]]:
        return await asyncio.gather(*(answer(fast, "/predict", body(1)) for _ in range(40)))

    statuses = [status for status, _ in asyncio.run(run())]
    report = fast.stats.as_triton("m", "1")
    inference = report["inference_stats"]
    assert inference["success"]["count"] == statuses.count(200) > 0
    assert inference["fail"]["count"] == statuses.count(503) > 0
    assert inference["fail"]["ns"] >= inference["fail"]["count"] * 10 * MS  # each waited past the 10 ms budget
    assert report["inference_count"] == statuses.count(200)
    assert report["execution_count"] == len(model.calls)
    assert inference["queue"]["count"] == sum(model.calls)  # every request that ran waited once


def test_a_split_request_is_one_answer_of_several_executions() -> None:
    model = StandIn()
    fast = predictor(model, max_batch_size=4)
    status, _ = asyncio.run(answer(fast, "/predict", body(*range(10))))
    assert status == 200
    report = fast.stats.as_triton("m", "1")
    assert (report["inference_stats"]["success"]["count"], report["inference_count"]) == (1, 10)
    assert {b["batch_size"]: b["compute_infer"]["count"] for b in report["batch_stats"]} == {4: 2, 2: 1}


def test_without_batching_each_request_is_its_own_execution_with_no_wait() -> None:
    fast = predictor(StandIn(), enabled=False)

    async def run() -> None:
        for digit in range(3):
            await answer(fast, "/predict", body(digit, digit))

    asyncio.run(run())
    report = fast.stats.as_triton("m", "1")
    assert (report["execution_count"], report["inference_count"]) == (3, 6)
    assert report["inference_stats"]["queue"] == {"count": 3, "ns": 0}
    assert [b["batch_size"] for b in report["batch_stats"]] == [2]
