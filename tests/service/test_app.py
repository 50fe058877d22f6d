"""The BentoML app in-process: `MNISTService.to_asgi()` under Starlette's test client, every route and error."""

from __future__ import annotations

import base64
import gc
import io
import json
import re
import time

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from service.codecs.images import decode_image, mnist_from_image
from service.documents import model_info
from service.gcpauses import FLUSH_EVERY_S
from service.runtime import ModelRuntime
from service.schemas import PredictResponse
from service.settings import Batching, Limits, ServiceSettings
from tests.service.answers import assert_answers

BAD_JSON = [
    ("wrong length", {"images": [[0.5] * 783]}, "expected shape"),
    ("empty list", {"images": []}, "no images"),
    ("NaN", {"images": [[0.0] * 783 + [float("nan")]]}, r"images\[0\]: NaN or infinite"),
    ("Infinity", {"images": [[0.0] * 784, [0.0] * 783 + [float("inf")]]}, r"images\[1\]: NaN or infinite"),
    ("out of range", {"images": [[255.0] * 784]}, r"values must be in \[0, 1\]"),
    ("non-numeric", {"images": [["a"] * 784]}, "Input should be a valid number"),
    ("boolean", {"images": [[True] * 784]}, "Input should be a valid number"),
    ("not a list", {"images": "pixels"}, "Input should be a valid array"),
    ("missing field", {}, "Field required"),
    ("bad activation", {"images": [[0.0] * 784], "activation": "relu"}, "softmax"),
]
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


def answered(response, runtime: ModelRuntime, pixels: np.ndarray, activation: str | None = None) -> dict:  # noqa: ANN001
    """A 200 whose body is what the runtime gives for `pixels` alone; the body."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert_answers(PredictResponse.model_validate(body), runtime, pixels.astype(np.float32), activation)
    return body


@pytest.mark.parametrize("activation", [None, "softmax", "sigmoid"])
def test_predict_json(client: TestClient, default_runtime: ModelRuntime, sample, activation: str | None) -> None:
    x = sample[0][:8] / 255
    response = client.post("/predict", json={"images": x.tolist(), "activation": activation})
    body = answered(response, default_runtime, x, activation)
    assert [p["label"] for p in body["predictions"]] == [str(d) for d in sample[1][:8]]  # the sample's true digits


@pytest.mark.parametrize("form", ["raw-uint8", "raw-float32", "npy-28x28", "npy-float64"])
def test_predict_bytes(client: TestClient, default_runtime: ModelRuntime, sample, form: str) -> None:
    x = sample[0][:16]
    if form == "raw-uint8":
        payload = {"data": base64.b64encode(x.tobytes()).decode()}
    elif form == "raw-float32":
        payload = {"data": base64.b64encode((x / 255).astype(np.float32).tobytes()).decode(), "dtype": "float32"}
    else:
        buf = io.BytesIO()
        np.save(buf, x.reshape(16, 28, 28) if form == "npy-28x28" else x / 255)
        payload = {"data": base64.b64encode(buf.getvalue()).decode(), "format": "npy"}
    answered(client.post("/predict_bytes", json=payload), default_runtime, x.astype(np.float32) / 255)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("activation", [None, "sigmoid"])
def test_predict_image_upload(client: TestClient, default_runtime: ModelRuntime, sample, activation: str | None):
    picture = png(Image.fromarray(255 - sample[0][0].reshape(28, 28)).convert("RGB").resize((280, 280)))
    data = {"activation": activation} if activation else None
    response = client.post("/predict_image", files={"image": ("digit.png", picture, "image/png")}, data=data)
    pixels = mnist_from_image(decode_image(picture)).reshape(1, 784)
    body = answered(response, default_runtime, pixels, activation)
    assert body["predictions"][0]["label"] == str(sample[1][0])


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_metadata_reports_the_runtime_in_use(client: TestClient, default_runtime: ModelRuntime, method: str) -> None:
    response = client.get("/metadata") if method == "GET" else client.post("/metadata", json={})
    assert response.status_code == 200, response.text
    info = response.json()
    meta = default_runtime.metadata
    assert (info["name"], info["version"], info["head"], info["labels"]) == (
        meta.name,
        meta.version,
        meta.head,
        meta.labels,
    )
    assert info["execution_provider"] == default_runtime.provider
    assert info["test_accuracy"] == meta.metrics["test_accuracy"]
    batching = Batching()  # the defaults: the client fixture's app
    assert info["batching"]["max_batch_size"] == batching.max_batch_size
    assert info["batching"]["enabled"] == batching.enabled
    assert info["limits"] == {
        "max_images_per_request": Limits.max_images,
        "max_body_bytes": Limits.max_body_bytes,
        "max_queued_requests": batching.max_queue,
    }
    assert 0 < info["startup_seconds"] < 60


def test_metadata_gives_the_start_up_time_in_milliseconds(
    default_runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(default_runtime, "startup_seconds", 1.23456)
    assert model_info(default_runtime, ServiceSettings.from_env({})).startup_seconds == 1.235


def histogram_count(client: TestClient, name: str, label: str = "") -> float:
    pattern = rf'^{name}_bucket{{[^}}]*{re.escape(label)}[^}}]*le="\+Inf"[^}}]*}} (\S+)$'
    return sum(float(n) for n in re.findall(pattern, client.get("/metrics").text, re.MULTILINE))


def test_metrics_name_the_provider_in_use_and_count_batches(client: TestClient, default_runtime: ModelRuntime):
    before = histogram_count(client, "mnist_adaptive_batch_size")
    for _ in range(3):
        assert client.post("/predict", json={"images": [[0.0] * 784]}).status_code == 200
    text = client.get("/metrics").text
    assert re.search(rf'mnist_model_info\{{.*provider="{default_runtime.provider}".*\}} 1\.0', text)
    assert histogram_count(client, "mnist_adaptive_batch_size") == before + 3  # one call each: sent one by one
    assert histogram_count(client, "mnist_batch_seconds") == before + 3  # and each call is timed


@pytest.mark.parametrize(("case", "payload", "message"), BAD_JSON, ids=[c[0] for c in BAD_JSON])
def test_bad_json_is_a_400_naming_the_problem(client: TestClient, case: str, payload: dict, message: str) -> None:
    body = json.dumps(payload)  # Python writes NaN and Infinity, as some clients do
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert re.search(message, response.text), response.text


def test_too_many_images_is_a_400_naming_the_limit(client: TestClient) -> None:
    limit = Limits.max_images
    response = client.post("/predict", json={"images": [[0.0] * 784] * (limit + 1)})
    assert response.status_code == 400
    assert f"{limit + 1} images in one request; the limit is {limit}" in response.text


@pytest.mark.parametrize(("case", "payload", "message"), BAD_BYTES, ids=[c[0] for c in BAD_BYTES])
def test_bad_bytes_are_a_400(client: TestClient, case: str, payload: dict, message: str) -> None:
    response = client.post("/predict_bytes", json=payload)
    assert response.status_code == 400, response.text
    assert re.search(message, response.text), response.text


def test_wrong_content_type_is_415(client: TestClient) -> None:
    response = client.post("/predict", content=b'{"images": [[0.0]]}', headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["error"] == "Content-Type must be application/json for /predict, got 'text/plain'"
    upload = client.post("/predict_image", json={"image": "x"})
    assert upload.status_code == 415
    assert "multipart/form-data" in upload.json()["error"]


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    limit = Limits.max_body_bytes
    big = b'{"images": [[' + b"0.0," * (limit // 4) + b"0.0]]}"
    response = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == f"request body of {len(big)} bytes exceeds {limit}"


@pytest.mark.parametrize("payload", [b"not an image at all", b"GIF89a\x01\x00"])
def test_corrupt_upload_is_a_400(client: TestClient, payload: bytes) -> None:
    response = client.post("/predict_image", files={"image": ("x.png", payload, "image/png")})
    assert response.status_code == 400
    assert response.json()["field"] == "image"
    assert "not a readable image" in response.json()["error"]


def test_openapi_examples_are_answered_as_the_runtime_answers_them(
    client: TestClient, default_runtime: ModelRuntime
) -> None:
    spec = client.get("/docs.json").json()
    for route in ("/predict", "/predict_bytes"):
        schema_ref = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]["schema"]
        name = schema_ref["$ref"].rsplit("/", 1)[1] if "$ref" in schema_ref else None
        example = (spec["components"]["schemas"][name] if name else schema_ref)["example"]
        if route == "/predict":
            pixels = np.array(example["images"], np.float32)
        else:
            pixels = np.frombuffer(base64.b64decode(example["data"]), np.uint8).reshape(-1, 784) / 255
        body = answered(client.post(route, json=example), default_runtime, pixels)
        assert body["predictions"][0]["label"] == "7"  # the example is MNIST's first test digit, a 7


def test_health_endpoints_answer(client: TestClient) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_the_middleware_stack_is_what_the_front_assumes(client: TestClient) -> None:
    """BentoML's metrics and tracing outside (so the front's answers are counted), the timeout fix in place of
    BentoML's leaking middleware, then the front; BentoML's request context only for what the front hands on
    (the front does not use it)."""
    from service.bentoml_internals import CancellingTimeoutMiddleware

    names = [m.cls.__name__ for m in client.app.user_middleware]
    assert names[-3:] == ["CancellingTimeoutMiddleware", "Front", "ContextMiddleware"]
    assert names.index("RunnerTrafficMetricsMiddleware") < names.index("Front")
    assert any(m.cls is CancellingTimeoutMiddleware for m in client.app.user_middleware)
    assert "TimeoutMiddleware" not in names  # BentoML's own, with the timer leak


def test_metrics_time_the_garbage_collectors_pauses(client: TestClient) -> None:
    def full_collections() -> float:
        return histogram_count(client, "mnist_gc_pause_seconds", 'generation="2"')

    before = full_collections()
    gc.collect()
    deadline = time.monotonic() + 10 * FLUSH_EVERY_S  # handed to the histogram once a second, off the callback
    while full_collections() < before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert full_collections() >= before + 1
