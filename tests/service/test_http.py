"""The service over HTTP, against a real `bentoml serve` process on a free loopback port."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from loadtests.run import batch_histogram, histogram_diff
from loadtests.server import running_service
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
def expected_labels(test_set: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """What the served model itself predicts for each test image, computed in-process."""
    runtime = ModelRuntime(RuntimeConfig(models_dir=str(MODELS_DIR), model="default"))
    return runtime.predict(test_set[0].astype(np.float32) / 255).label_indices


def labels_of(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [int(p["label"]) for p in response.json()["predictions"]]


def assert_still_serving(client: httpx.Client) -> None:
    assert client.get("/livez").status_code == 200
    assert labels_of(client.post("/predict", json={"images": [[0.0] * 784]})) != []


def test_predict_json(client: httpx.Client, test_set: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = test_set
    body = client.post("/predict", json={"images": (x[:8] / 255).tolist()}).json()
    meta = json.loads((MODELS_DIR / "default" / "metadata.json").read_text())
    assert body["model"] == "default"
    assert body["version"] == meta["version"]
    assert body["activation"] == "softmax"
    assert [int(p["label"]) for p in body["predictions"]] == y[:8].tolist()
    for p in body["predictions"]:
        assert len(p["probabilities"]) == 10
        assert sum(p["probabilities"]) == pytest.approx(1.0, abs=1e-5)


def test_predict_json_with_sigmoid(client: httpx.Client, test_set: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = test_set
    body = client.post("/predict", json={"images": (x[:4] / 255).tolist(), "activation": "sigmoid"}).json()
    assert body["activation"] == "sigmoid"
    assert [int(p["label"]) for p in body["predictions"]] == y[:4].tolist()
    assert any(abs(sum(p["probabilities"]) - 1.0) > 1e-3 for p in body["predictions"])  # independent, not a softmax


@pytest.mark.parametrize("form", ["raw-uint8", "raw-float32", "npy-28x28"])
def test_predict_bytes(client: httpx.Client, test_set: tuple[np.ndarray, np.ndarray], form: str) -> None:
    x, y = test_set
    if form == "raw-uint8":
        payload = {"data": base64.b64encode(x[:16].tobytes()).decode()}
    elif form == "raw-float32":
        raw = (x[:16] / 255).astype(np.float32).tobytes()
        payload = {"data": base64.b64encode(raw).decode(), "dtype": "float32"}
    else:
        buf = io.BytesIO()
        np.save(buf, x[:16].reshape(16, 28, 28))
        payload = {"data": base64.b64encode(buf.getvalue()).decode(), "format": "npy"}
    assert labels_of(client.post("/predict_bytes", json=payload)) == y[:16].tolist()


def test_predict_image_upload(client: httpx.Client, test_set: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = test_set
    buf = io.BytesIO()
    Image.fromarray(255 - x[0].reshape(28, 28)).convert("RGB").resize((280, 280)).save(buf, format="PNG")
    response = client.post("/predict_image", files={"image": ("digit.png", buf.getvalue(), "image/png")})
    assert labels_of(response) == [int(y[0])]
    assert response.json()["activation"] == "softmax"
    files = {"image": ("digit.png", buf.getvalue(), "image/png")}
    sigmoid = client.post("/predict_image", files=files, data={"activation": "sigmoid"})
    assert labels_of(sigmoid) == [int(y[0])]
    assert sigmoid.json()["activation"] == "sigmoid"


def test_metadata(client: httpx.Client) -> None:
    info = client.post("/metadata", json={}).json()
    assert info["name"] == "default"
    assert info["head"] == "softmax"
    assert info["execution_provider"] in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert info["test_accuracy"] > 0.985
    assert info["batching"]["max_batch_size"] == 64
    assert info["limits"]["max_images_per_request"] == 512


def test_metrics_expose_provider_and_batch_sizes(client: httpx.Client) -> None:
    client.post("/predict", json={"images": [[0.0] * 784]})
    text = client.get("/metrics").text
    assert re.search(r'mnist_model_info\{.*provider="CPUExecutionProvider".*\} 1\.0', text)
    assert "adaptive_batch_size_bucket" in text


BAD_JSON = [
    ("wrong length", {"images": [[0.5] * 783]}, "expected shape"),
    ("empty list", {"images": []}, "no images"),
    ("NaN", {"images": [[0.0] * 783 + [float("nan")]]}, "NaN or infinite"),
    ("Infinity", {"images": [[0.0] * 783 + [float("inf")]]}, "NaN or infinite"),
    ("out of range", {"images": [[255.0] * 784]}, r"values must be in \[0, 1\]"),
    ("non-numeric", {"images": [["a"] * 784]}, "Input should be a valid number"),
    ("boolean", {"images": [[True] * 784]}, "Input should be a valid number"),
    ("not a list", {"images": "pixels"}, "Input should be a valid array"),
    ("missing field", {}, "Field required"),
    ("too many images", {"images": [[0.0] * 784] * 513}, "513 images in one request; the limit is 512"),
    ("bad activation", {"images": [[0.0] * 784], "activation": "relu"}, "softmax"),
]


@pytest.mark.parametrize(("case", "payload", "message"), BAD_JSON, ids=[c[0] for c in BAD_JSON])
def test_bad_json_is_a_400_naming_the_problem(client: httpx.Client, case: str, payload: dict, message: str) -> None:
    body = json.dumps(payload)  # Python writes NaN and Infinity, as some clients do
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert re.search(message, response.text), response.text
    assert_still_serving(client)


BAD_BYTES = [
    ("not base64", {"data": "!!!"}, "not valid base64"),
    ("partial image", {"data": base64.b64encode(b"\0" * 700).decode()}, "not a whole number of 784-byte"),
    ("not npy", {"data": base64.b64encode(b"hello").decode(), "format": "npy"}, r"not a readable \.npy"),
    (
        "float out of range",
        {"data": base64.b64encode(np.full(784, 3, np.float32).tobytes()).decode(), "dtype": "float32"},
        r"\[0, 1\]",
    ),
]


@pytest.mark.parametrize(("case", "payload", "message"), BAD_BYTES, ids=[c[0] for c in BAD_BYTES])
def test_bad_bytes_are_a_400(client: httpx.Client, case: str, payload: dict, message: str) -> None:
    response = client.post("/predict_bytes", json=payload)
    assert response.status_code == 400, response.text
    assert re.search(message, response.text), response.text
    assert_still_serving(client)


def test_wrong_content_type_is_415(client: httpx.Client) -> None:
    response = client.post("/predict", content=b'{"images": [[0.0]]}', headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]
    upload = client.post("/predict_image", json={"image": "x"})
    assert upload.status_code == 415
    assert_still_serving(client)


def test_body_over_the_limit_is_413(client: httpx.Client) -> None:
    big = b'{"images": [[' + b"0.0," * (1_200_000) + b"0.0]]}"  # ~4.8 MB > 4 MiB
    response = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "exceeds" in response.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the guard counts as the body streams in
        yield from (big[i : i + 65536] for i in range(0, len(big), 65536))

    streamed = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert_still_serving(client)


@pytest.mark.parametrize("payload", [b"not an image at all", b"GIF89a\x01\x00"])
def test_corrupt_upload_is_a_400(client: httpx.Client, payload: bytes) -> None:
    response = client.post("/predict_image", files={"image": ("x.png", payload, "image/png")})
    assert response.status_code == 400
    assert response.json()["field"] == "image"
    assert_still_serving(client)


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
    client: httpx.Client, test_set: tuple[np.ndarray, np.ndarray], expected_labels: np.ndarray
) -> None:
    x, _ = test_set
    payload = {"data": base64.b64encode(x[:200].tobytes()).decode()}  # 200 rows > max_batch_size 64
    assert labels_of(client.post("/predict_bytes", json=payload)) == expected_labels[:200].tolist()


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


def test_openapi_examples_work(client: httpx.Client) -> None:
    spec = client.get("/docs.json").json()
    for route in ("/predict", "/predict_bytes"):
        schema_ref = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]["schema"]
        name = schema_ref["$ref"].rsplit("/", 1)[1] if "$ref" in schema_ref else None
        schema = spec["components"]["schemas"][name] if name else schema_ref
        assert client.post(route, json=schema["example"]).status_code == 200


def test_pigeon_is_servable(mnist_root: Path, test_set: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = test_set
    with running_service({"MNIST_MODEL": "pigeon"}) as url:
        body = httpx.post(f"{url}/predict", json={"images": (x[:20] / 255).tolist()}, timeout=30).json()
    assert body["model"] == "pigeon"
    assert body["activation"] == "sigmoid"
    assert all(len(p["probabilities"]) == 1 for p in body["predictions"])
    predicted_small = [p["label"] == "0/1/2" for p in body["predictions"]]
    assert np.mean(np.array(predicted_small) == (y[:20] < 3)) >= 0.95


PARITY_CASES = [
    ("/predict", {"images": [[0.0] * 784, [0.5] * 784]}),
    ("/predict", {"images": [[0.25] * 784], "activation": "sigmoid"}),
    ("/predict_bytes", {"data": base64.b64encode(np.arange(784 * 3, dtype=np.uint8).tobytes()).decode()}),
    *(("/predict", case[1]) for case in BAD_JSON),
    *(("/predict_bytes", case[1]) for case in BAD_BYTES),
]


def metric_count(client: httpx.Client, name: str) -> float:
    """Observations of a histogram: its +Inf buckets (multiprocess Prometheus writes no _count)."""
    pattern = rf'^{name}_bucket{{[^}}]*le="\+Inf"[^}}]*}} (\S+)$'
    return sum(float(n) for n in re.findall(pattern, client.get("/metrics").text, re.MULTILINE))


def test_fast_path_answers_exactly_as_bentomls_own_route(client: httpx.Client) -> None:
    """Every status and body, valid or not, is the same with the fast path on (client) and off."""
    fast_batches = metric_count(client, "mnist_adaptive_batch_size")
    plain_env = {"MNIST_MODEL": "default", "MNIST_FAST_PATH": "0", **LIMITS}
    with running_service(plain_env) as url, httpx.Client(base_url=url, timeout=60) as plain:
        for route, payload in PARITY_CASES:
            body = json.dumps(payload)
            expected = plain.post(route, content=body, headers={"content-type": "application/json"})
            got = client.post(route, content=body, headers={"content-type": "application/json"})
            assert (got.status_code, got.json()) == (expected.status_code, expected.json()), (route, body[:80])
        assert metric_count(plain, "mnist_adaptive_batch_size") == 0
        assert metric_count(plain, "bentoml_service_adaptive_batch_size") > 0
    assert metric_count(client, "mnist_adaptive_batch_size") >= fast_batches + 3, "the fast path did not serve"
