"""The service over HTTP, against a real `bentoml serve` process on a free loopback port.

Routes and errors are tested in-process (test_app.py); these are what needs the real server: start-up from
the environment, batching across concurrent connections, a setting or model that cannot be served.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from loadtests.run import batch_histogram, histogram_diff
from loadtests.server import REPO, bentoml_command, free_port, running_service
from service.runtime import ModelRuntime, RuntimeConfig
from tests.conftest import MODELS_DIR

pytestmark = [pytest.mark.slow, pytest.mark.data]

LIMITS = {"MNIST_MAX_IMAGES": "512", "MNIST_MAX_BODY_BYTES": str(4 * 1024 * 1024), "MNIST_MAX_BATCH_SIZE": "64"}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with running_service({"MNIST_MODEL": "default", **LIMITS}) as url, httpx.Client(base_url=url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def test_set(mnist_root: Path) -> tuple[np.ndarray, np.ndarray]:
    from torchvision.datasets import MNIST

    ds = MNIST(str(mnist_root), train=False, download=False)
    return ds.data.numpy().reshape(-1, 784), ds.targets.numpy()


@pytest.fixture(scope="module")
def runtime() -> ModelRuntime:
    """The served model, in-process: what the server must answer."""
    return ModelRuntime(RuntimeConfig(models_dir=str(MODELS_DIR), model="default"))


@pytest.fixture(scope="module")
def expected_labels(test_set: tuple[np.ndarray, np.ndarray], runtime: ModelRuntime) -> np.ndarray:
    """What the served model itself predicts for each test image, computed in-process."""
    return runtime.predict(test_set[0].astype(np.float32) / 255).label_indices


def labels_of(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [int(p["label"]) for p in response.json()["predictions"]]


def test_the_server_reports_the_provider_its_runtime_uses(client: httpx.Client, runtime: ModelRuntime) -> None:
    assert client.post("/metadata", json={}).json()["execution_provider"] == runtime.provider
    text = client.get("/metrics").text
    assert re.search(rf'mnist_model_info\{{.*provider="{runtime.provider}".*\}} 1\.0', text)


def test_concurrent_callers_are_batched_and_get_their_own_rows(
    client: httpx.Client, test_set: tuple[np.ndarray, np.ndarray], expected_labels: np.ndarray
) -> None:
    x, _ = test_set

    def call(i: int) -> tuple[int, list[int]]:
        n = 1 + i % 3  # callers send 1-3 images each
        rows = np.arange(i * 3, i * 3 + n)
        return i, labels_of(client.post("/predict", json={"images": (x[rows] / 255).tolist()}))

    before = batch_histogram(client.get("/metrics").text)
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(call, range(256)))
    for i, labels in results:
        rows = np.arange(i * 3, i * 3 + 1 + i % 3)
        assert labels == expected_labels[rows].tolist(), f"caller {i} got someone else's rows"
    dispatched = histogram_diff(before, batch_histogram(client.get("/metrics").text))  # only /predict ran
    calls = sum(dispatched.values())
    single = dispatched.get("<=1.0", 0)
    assert calls < 256, "every request ran alone: no batching happened"
    assert calls - single > 0, "no batch held more than one request"


def test_request_larger_than_max_batch_size_is_split_and_reassembled(
    client: httpx.Client, test_set: tuple[np.ndarray, np.ndarray], runtime: ModelRuntime
) -> None:
    x, _ = test_set
    payload = {"data": base64.b64encode(x[:200].tobytes()).decode(), "activation": "sigmoid"}  # 200 rows > 64
    response = client.post("/predict_bytes", json=payload)
    assert response.status_code == 200, response.text
    expected = runtime.predict(x[:200].astype(np.float32) / 255, "sigmoid")
    got = np.array([p["probabilities"] for p in response.json()["predictions"]])
    np.testing.assert_allclose(got, expected.probabilities, rtol=1e-5, atol=1e-6)


def test_whole_test_set_over_http_matches_the_metadata_accuracy(
    client: httpx.Client, test_set: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = test_set
    predicted: list[int] = []
    for start in range(0, len(x), 500):
        payload = {"data": base64.b64encode(x[start : start + 500].tobytes()).decode()}
        predicted += labels_of(client.post("/predict_bytes", json=payload))
    accuracy = float((np.array(predicted) == y).mean())
    meta = json.loads((MODELS_DIR / "default" / "metadata.json").read_text())
    assert accuracy == pytest.approx(meta["metrics"]["test_accuracy"], abs=1e-4)


def test_pigeon_is_servable(mnist_root: Path, test_set: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = test_set
    with running_service({"MNIST_MODEL": "pigeon"}) as url:
        body = httpx.post(f"{url}/predict", json={"images": (x[:20] / 255).tolist()}, timeout=30).json()
    assert body["model"] == "pigeon"
    assert body["activation"] == "sigmoid"
    pigeon = ModelRuntime(RuntimeConfig(models_dir=str(MODELS_DIR), model="pigeon"))
    expected = pigeon.predict(x[:20].astype(np.float32) / 255)
    got = np.array([p["probabilities"] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected.probabilities, rtol=1e-5, atol=1e-6)
    predicted_small = [p["label"] == "0/1/2" for p in body["predictions"]]
    assert np.mean(np.array(predicted_small) == (y[:20] < 3)) >= 0.95


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"MNIST_MODEL": "nope"}, "model 'nope' not found in .*; available: default, fast, mnist-nn, pigeon"),
        ({"MNIST_MODEL": "../../etc"}, "model: got '../../etc'; a model is a folder name in"),
        ({"MNIST_MAX_QUEUE": "none"}, "MNIST_MAX_QUEUE: got 'none'"),
        ({"MNIST_FAST_PATH": "0"}, r"MNIST_FAST_PATH was removed: every route now takes the one request path"),
    ],
    ids=["missing", "a path", "a bad setting", "a removed setting"],
)
def test_a_model_that_cannot_be_served_ends_the_command_with_one_message(
    env: dict[str, str], reason: str, tmp_path: Path
) -> None:
    """Before: BentoML restarted the worker every ~10 s forever, each time with a 30-line traceback."""
    command = bentoml_command(free_port())
    environment = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": str(tmp_path), **env}
    done = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if "cannot serve" in line]
    assert len(lines) == 1, done.stderr[-2000:]
    assert re.search(reason, lines[0]), lines[0]
    assert "Traceback" not in done.stderr
