from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from loadtests.asyncload import LoadConfig
from loadtests.asyncload import run as run_asyncload
from loadtests.payloads import Payloads, Request, build_requests, check_response, label_is_right, load_sample
from loadtests.run import (
    RunConfig,
    batch_histogram,
    batch_time_histogram,
    cpu_list,
    gc_pause_diff,
    gc_pauses,
    histogram_diff,
    images_in,
    locust_commands,
    locust_once,
)
from loadtests.server import running_service
from tests.conftest import REPO

BIN = Path(sys.executable).parent


def test_payload_pools_cover_every_scenario() -> None:
    images, labels = load_sample()
    assert images.shape == (512, 784)
    assert labels.shape == (512,)
    cases = (("json-1", "/predict", 1), ("bytes-256", "/predict_bytes", 256), ("image", "/predict_image", 1))
    for scenario, path, count in cases:
        requests = build_requests(scenario, images, pool=4)
        assert {r.path for r in requests} == {path}
        assert {r.images for r in requests} == {count}
    with pytest.raises(ValueError, match="scenario"):
        build_requests("xml-3", images)


def one_hot(digit: int) -> list[float]:
    return [float(d == digit) for d in range(10)]


def answer(labels: list[int]) -> dict:
    """A right-shaped, self-consistent softmax answer labelling each image as `labels` says."""
    return {"activation": "softmax", "predictions": [{"label": str(d), "probabilities": one_hot(d)} for d in labels]}


def test_check_response_counts_a_wrong_answer_as_a_failure() -> None:
    request = Payloads.load("json-1").next()
    (digit,) = request.digits
    assert digit == load_sample()[1][0]  # the request carries its image's true label
    assert check_response(answer([digit]), request) is None
    other = (digit + 1) % 10
    assert check_response(answer([other]), request) == "wrong digits: 1 of 1"  # self-consistent, but wrong
    inconsistent = {"activation": "softmax", "predictions": [{"label": str(other), "probabilities": one_hot(digit)}]}
    assert check_response(inconsistent, request) == "label is not the most probable class"
    not_normalised = {"activation": "softmax", "predictions": [{"label": str(digit), "probabilities": [0.5] * 10}]}
    assert check_response(not_normalised, request) == "softmax probabilities do not sum to 1"
    assert check_response({"predictions": []}, request) == "expected 1 predictions"


def test_a_server_answering_one_digit_for_every_image_fails_every_scenario() -> None:
    images, digits = load_sample()
    for scenario in ("json-1", "json-16", "bytes-256", "v2-256", "image"):
        requests = build_requests(scenario, images, digits=digits)
        assert all(len(r.digits) == r.images for r in requests), scenario
        failed = [check_response(answer([0] * r.images), r) for r in requests]
        zeros = sum(r.digits == (0,) for r in requests)  # a one-image request of a real 0 is answered right
        assert sum(f is not None for f in failed) == len(requests) - zeros, scenario
        assert all(check_response(answer(list(r.digits)), r) is None for r in requests), scenario


def test_a_request_may_have_the_wrong_digits_a_model_at_the_export_floor_would_have() -> None:
    truth = tuple(int(d) for d in load_sample()[1][:256])
    request = Request("/predict_bytes", b"", "application/json", 256, truth)
    for wrong, verdict in ((13, None), (14, "wrong digits: 14 of 256")):  # 5% of 256 is 12.8: 13 allowed
        labels = [(d + 1) % 10 if i < wrong else d for i, d in enumerate(truth)]
        assert check_response(answer(labels), request) == verdict


@pytest.mark.parametrize(
    ("label", "digit", "right"),
    [("7", 7, True), ("1", 7, False), ("0/1/2", 2, True), ("0/1/2", 5, False), ("not 0/1/2", 5, True),
     ("not 0/1/2", 0, False), (7, 7, False)],
)  # fmt: skip
def test_a_label_is_right_when_it_names_the_true_digit(label: object, digit: int, right: bool) -> None:
    assert label_is_right(label, digit) is right


def pause_metrics(worker: str, full: int, full_within_10ms: int, seconds: float) -> str:
    labels = f'generation="2",worker="{worker}"'
    return "\n".join(
        [
            f'mnist_gc_pause_seconds_bucket{{{labels},le="0.01"}} {full_within_10ms}.0',
            f'mnist_gc_pause_seconds_bucket{{{labels},le="+Inf"}} {full}.0',
            f"mnist_gc_pause_seconds_count{{{labels}}} {full}.0",
            f"mnist_gc_pause_seconds_sum{{{labels}}} {seconds}",
            f'mnist_gc_pause_seconds_count{{generation="0",worker="{worker}"}} 100.0',
        ]
    )


def test_gc_pauses_are_summed_over_workers_and_diffed_between_scrapes() -> None:
    before = gc_pauses(pause_metrics("1", 2, 2, 0.004) + "\n" + pause_metrics("2", 1, 1, 0.002))
    after = gc_pauses(pause_metrics("1", 5, 3, 0.090) + "\n" + pause_metrics("2", 2, 2, 0.003))
    assert after["2"] == {"collections": 7.0, "seconds": 0.093, "over_10ms": 2.0}
    diff = gc_pause_diff(before, after)
    assert diff["2"] == {"collections": 4.0, "seconds": 0.087, "over_10ms": 2.0}
    assert diff["0"]["collections"] == 0.0
    assert gc_pauses("") == {}  # the FastAPI baseline has no /metrics


def test_batch_times_are_read_apart_from_batch_sizes() -> None:
    text = "\n".join(
        [
            'mnist_batch_seconds_bucket{le="0.0001"} 5.0',
            'mnist_batch_seconds_bucket{le="+Inf"} 7.0',
            'mnist_adaptive_batch_size_bucket{le="1.0"} 9.0',
        ]
    )
    assert batch_time_histogram(text) == {"0.0001": 5.0, "+Inf": 7.0}
    assert batch_histogram(text) == {"1.0": 9.0}


def test_batch_histogram_diff() -> None:
    before = batch_histogram(
        'bentoml_service_adaptive_batch_size_bucket{le="1.0",m="a"} 2.0\n'
        'bentoml_service_adaptive_batch_size_bucket{le="4.0",m="a"} 3.0\n'
        'bentoml_service_adaptive_batch_size_bucket{le="+Inf",m="a"} 3.0\n'
    )
    after = batch_histogram(
        'bentoml_service_adaptive_batch_size_bucket{le="1.0",m="a"} 5.0\n'
        'bentoml_service_adaptive_batch_size_bucket{le="4.0",m="a"} 10.0\n'
        'bentoml_service_adaptive_batch_size_bucket{le="+Inf",m="a"} 11.0\n'
    )
    assert histogram_diff(before, after) == {"<=1.0": 3, "<=4.0": 4, "<=+Inf": 1}


def test_images_per_request_of_a_locust_row() -> None:
    assert images_in("/predict [64 images]", "json-batch") == 64
    assert images_in("/predict_bytes [256 images]", "bytes-256") == 256
    assert images_in("/predict", "json-1") == 1


@pytest.fixture(scope="module")
def service_url() -> Iterator[str]:
    with running_service({"MNIST_MODEL": "default"}) as url:
        yield url


@pytest.mark.slow
def test_locust_smoke_load_has_no_failed_request(service_url: str, tmp_path: Path) -> None:
    prefix = tmp_path / "smoke"
    command = [str(BIN / "locust"), "-f", "loadtests/locustfile.py", "--config", "loadtests/locust.conf"]
    command += ["--host", service_url, "--users", "4", "--spawn-rate", "4", "--run-time", "5s", "--csv", str(prefix)]
    for user_class in ("JsonOneImageUser", "BytesBatchUser", "ImageUploadUser"):
        result = subprocess.run([*command, user_class], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        with open(f"{prefix}_stats.csv") as f:
            total = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
        assert int(total["Request Count"]) > 10, user_class
        assert int(total["Failure Count"]) == 0, user_class


def assert_sent_at_the_offered_rate(summary: dict, rate: float) -> None:
    """The rate the sends left at, measured, within 5% of the rate asked for, and none of them late by more than
    a shared machine's scheduling noise."""
    assert summary["offered_per_s"] == rate
    assert summary["sent_per_s"] == pytest.approx(rate, rel=0.05)
    assert summary["send_lag_p99_ms"] < 50


@pytest.mark.slow
def test_open_loop_client_sends_at_the_fixed_rate(service_url: str) -> None:
    summary = run_asyncload(LoadConfig(host=service_url, rate=100, duration=3, warmup=0.5))
    assert summary["failures"] == {}
    assert_sent_at_the_offered_rate(summary, 100)
    assert summary["requests_per_s"] == pytest.approx(100, rel=0.1)  # answered as fast as sent
    assert summary["ok_requests"] == summary["requests"]  # every answer passed check_response
    assert summary["accuracy"] == 1.0  # json-1's 64 digits are all ones the default model gets right


def serve_stub(answer_for: Callable[[bytes], dict], delay_s: float) -> Iterator[str]:
    """A server that answers every /predict with `answer_for(body)` after `delay_s`."""
    import asyncio
    import threading

    from aiohttp import web

    async def predict(request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(delay_s)
        return web.json_response(answer_for(body))

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/predict", predict)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - aiohttp has no public accessor for port 0
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


@pytest.fixture
def slow_stub() -> Iterator[str]:
    """A server that answers every json-1 body right (its digit, from the sample) after 40 ms."""
    truth = {r.body: list(r.digits) for r in Payloads.load("json-1").requests}
    yield from serve_stub(lambda body: answer(truth[body]), 0.040)


@pytest.fixture
def zero_stub() -> Iterator[str]:
    """A server that answers "0", self-consistently, for every digit."""
    yield from serve_stub(lambda body: answer([0] * len(json.loads(body)["images"])), 0.0)


def test_open_loop_latency_is_the_servers_answer_time(slow_stub: str) -> None:
    summary = run_asyncload(LoadConfig(host=slow_stub, rate=50, duration=1.0, warmup=0.2))
    assert summary["failures"] == {}
    assert 45 <= summary["requests"] <= 50
    assert_sent_at_the_offered_rate(summary, 50)
    assert summary["accuracy"] == 1.0
    assert 40 <= summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert summary["p50_ms"] < 40 + 100  # 40 ms of server time, plus this machine's noise


def test_a_server_answering_zero_for_every_digit_fails_the_load_test(zero_stub: str) -> None:
    summary = run_asyncload(LoadConfig(host=zero_stub, rate=50, duration=1.0, warmup=0.2))
    digits = load_sample()[1][:64]  # json-1's pool: the sample's first 64 digits, in turn
    assert summary["failures"] == {"wrong digits: 1 of 1": summary["requests"] - summary["ok_requests"]}
    assert summary["ok_requests"] < summary["requests"] / 2
    assert 0.0 < summary["accuracy"] < 2 * float((digits == 0).mean()) + 0.1  # only the real zeros are right


def test_an_open_loop_that_cannot_keep_up_reports_the_rate_it_sent_at(
    slow_stub: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that blocks its event loop for 20 ms per send cannot send 200 a second: its report says it sent
    about 50 and was late, rather than the 200 asked for."""
    import loadtests.asyncload as asyncload

    send = asyncload._send  # noqa: SLF001 - the one place a send happens

    async def blocking_send(*args: object) -> None:
        time.sleep(0.020)
        await send(*args)

    monkeypatch.setattr(asyncload, "_send", blocking_send)
    summary = run_asyncload(LoadConfig(host=slow_stub, rate=200, duration=1.0, warmup=0.0))
    assert summary["offered_per_s"] == 200
    assert summary["sent_per_s"] < 0.5 * 200
    assert summary["send_lag_max_ms"] > 200


def test_cpu_lists_are_split_into_single_cpus() -> None:
    assert cpu_list("1") == ["1"]
    assert cpu_list("4-6,9") == ["4", "5", "6", "9"]
    assert cpu_list(None) == []


def test_distributed_mode_runs_a_master_and_pinned_workers(tmp_path: Path) -> None:
    cfg = RunConfig(scenario="bytes-256", load_cpus="4-5", locust_workers=3)
    master, *workers = locust_commands(cfg, "http://127.0.0.1:3000", 96, tmp_path / "p", port=5599)
    assert len(workers) == 3
    if shutil.which("taskset"):
        assert master[:3] == ["taskset", "-c", "4"]
        assert [w[2] for w in workers] == ["4", "5", "4"]  # one CPU each, in turn
    assert {"--master", "--expect-workers", "3", "--master-bind-port", "5599", "--users", "96"} <= set(master)
    assert all({"--worker", "--master-port", "5599", "BytesBatchUser"} <= set(w) for w in workers)
    (single,) = locust_commands(RunConfig(load_cpus="1"), "http://h", 8, tmp_path / "p", port=5599)
    assert "--master" not in single
    assert "--worker" not in single


@pytest.mark.slow
def test_distributed_locust_load_reaches_the_server(service_url: str, tmp_path: Path) -> None:
    cfg = RunConfig(scenario="json-1", host=service_url, users=[4], duration=4, warmup=0.5, locust_workers=2)
    result = locust_once(cfg, service_url, 4, tmp_path, server_pid=None)
    assert result["locust_processes"] == 3
    assert result["locust_exit_code"] == 0, (tmp_path / "locust_4u.log").read_text()[-2000:]
    assert result["requests"] > 10
    assert result["failed"] == 0


def test_tuning_rows_keep_the_provider_they_ran_on() -> None:
    from loadtests.tune import SHORT, median_rows

    run = dict.fromkeys(SHORT.values(), 1) | {"provider": "CUDAExecutionProvider", "p50_ms": 1.0, "p99_ms": 2.0}
    rounds = [[run | {"requests_per_s": 100.0, "failed": 0}], [run | {"requests_per_s": 120.0, "failed": 1}]]
    (row,) = median_rows(rounds)
    assert (row["provider"], row["requests_per_s"], row["failed"]) == ("CUDAExecutionProvider", 110.0, 1)


@pytest.mark.slow
def test_tune_reads_the_provider_the_server_uses(service_url: str) -> None:
    from loadtests.tune import served_provider

    assert served_provider(service_url) == httpx.get(f"{service_url}/metadata").json()["execution_provider"]
    assert served_provider(service_url).endswith("ExecutionProvider")
    assert served_provider("http://127.0.0.1:9") == "unknown"
