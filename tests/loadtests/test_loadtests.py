from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtests.asyncload import LoadConfig
from loadtests.asyncload import run as run_asyncload
from loadtests.payloads import Payloads, build_requests, check_response, load_sample
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


def test_check_response_counts_a_wrong_answer_as_a_failure() -> None:
    request = Payloads.load("json-1").next()
    one_hot_3 = [0.0] * 3 + [1.0] + [0.0] * 6
    good = {"activation": "softmax", "predictions": [{"label": "3", "probabilities": one_hot_3}]}
    assert check_response(good, request) is None
    wrong_label = {"activation": "softmax", "predictions": [{"label": "4", "probabilities": one_hot_3}]}
    assert check_response(wrong_label, request) == "label is not the most probable class"
    not_normalised = {"activation": "softmax", "predictions": [{"label": "3", "probabilities": [0.5] * 10}]}
    assert check_response(not_normalised, request) == "softmax probabilities do not sum to 1"
    assert check_response({"predictions": []}, request) == "expected 1 predictions"


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


@pytest.mark.slow
def test_open_loop_client_sends_at_the_fixed_rate(service_url: str) -> None:
    summary = run_asyncload(LoadConfig(host=service_url, rate=100, duration=3, warmup=0.5))
    assert summary["failures"] == {}
    assert 270 <= summary["requests"] <= 300  # 100/s for 3 s, all answered
    assert summary["ok_requests"] == summary["requests"]  # every answer passed check_response


@pytest.fixture
def slow_stub() -> Iterator[str]:
    """A server that answers every /predict with a right-shaped answer after 40 ms."""
    import asyncio
    import threading

    from aiohttp import web

    async def predict(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(0.040)
        one_hot = [0.0] * 3 + [1.0] + [0.0] * 6
        return web.json_response({"activation": "softmax", "predictions": [{"label": "3", "probabilities": one_hot}]})

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


def test_open_loop_latency_is_the_servers_answer_time(slow_stub: str) -> None:
    summary = run_asyncload(LoadConfig(host=slow_stub, rate=50, duration=1.0, warmup=0.2))
    assert summary["failures"] == {}
    assert 45 <= summary["requests"] <= 50
    assert 40 <= summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert summary["p50_ms"] < 40 + 100  # 40 ms of server time, plus this machine's noise


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
