"""How the service is put together, in-process (`build_service(settings).to_asgi()`, no subprocess): settings
passed in reach every door, CORS wraps the front's answers, and importing the service's modules changes nothing
until the service is built."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys

import bentoml
import numpy as np
import pytest
from PIL import Image

from service.settings import Batching, Limits
from tests.conftest import REPO
from tests.service.conftest import app_settings, serve_in_process

ORIGIN = "https://digits.example"


def test_settings_passed_in_reach_the_front_and_the_openapi_document() -> None:
    with serve_in_process(app_settings(limits=Limits(max_images=2))) as client:
        three = {"images": [[0.0] * 784] * 3}
        refused = client.post("/predict", json=three)
        assert refused.status_code == 400
        assert "3 images in one request; the limit is 2" in refused.json()["error"]
        assert client.post("/predict", json={"images": [[0.0] * 784] * 2}).status_code == 200
        body = client.get("/docs.json").json()["paths"]["/predict"]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"]["properties"]["images"]["maxItems"] == 2
        assert client.get("/metadata").json()["limits"]["max_images_per_request"] == 2


def test_cors_headers_on_the_predict_and_v2_answers() -> None:
    with serve_in_process(app_settings(cors_origins=(ORIGIN,))) as client:
        headers = {"origin": ORIGIN}
        for path, body in [
            ("/predict", {"images": [[0.0] * 784]}),
            (
                "/v2/models/default/infer",
                {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 784], "data": [0.0] * 784}]},
            ),
        ]:
            response = client.post(path, json=body, headers=headers)
            assert response.status_code == 200, response.text
            assert response.headers["access-control-allow-origin"] == ORIGIN, path
        refused = client.post("/predict", json={"images": []}, headers=headers)
        assert refused.status_code == 400
        assert refused.headers["access-control-allow-origin"] == ORIGIN  # a browser can read why
        preflight = client.options("/predict", headers={**headers, "access-control-request-method": "POST"})
        assert preflight.status_code == 200
        assert "POST" in preflight.headers["access-control-allow-methods"]
        stranger = client.get("/metadata", headers={"origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in stranger.headers


def test_without_cors_settings_no_cors_headers(client) -> None:  # noqa: ANN001 - the TestClient
    response = client.post("/predict", json={"images": [[0.0] * 784]}, headers={"origin": ORIGIN})
    assert "access-control-allow-origin" not in response.headers


def test_importing_the_service_modules_installs_nothing() -> None:
    """Only building the service (service.app) patches BentoML; every other module is inert on import."""
    check = """
import importlib, logging, pkgutil
import service
for info in pkgutil.iter_modules(service.__path__):
    if info.name != "app":
        importlib.import_module(f"service.{info.name}")
from bentoml._internal.server.http import traffic
from _bentoml_sdk.method import APIMethod
from _bentoml_sdk.service import openapi
assert traffic.TimeoutMiddleware.__module__.startswith("bentoml"), traffic.TimeoutMiddleware
assert not hasattr(APIMethod.openapi_request, "requires_body")
assert not hasattr(openapi.generate_spec, "names_document")
assert not logging.getLogger("bentoml._internal.server.http_app").filters
import service.app
assert traffic.TimeoutMiddleware.__module__ == "service.bentoml_internals"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.parametrize(("max_batch_size", "max_images", "largest"), [(16, 8, 16), (4, 32, 32)])
def test_a_worker_warms_its_model_up_to_the_largest_call_it_can_make(
    max_batch_size: int, max_images: int, largest: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.runtime import ModelRuntime
    from service.serving import Serving

    calls: list[int] = []
    original = ModelRuntime.logits
    monkeypatch.setattr(
        ModelRuntime, "logits", lambda self, pixels: calls.append(len(pixels)) or original(self, pixels)
    )
    settings = app_settings(batching=Batching(max_batch_size=max_batch_size), limits=Limits(max_images=max_images))
    serving = Serving.start(settings, {})
    assert serving.runtime.config.warmup_rows == largest
    assert calls[:3] == [1, largest, largest]  # before the worker reports ready


def histogram_count(client, name: str) -> float:  # noqa: ANN001 - the TestClient
    """A histogram's number of observations from /metrics (summed over its label sets)."""
    pattern = rf"^{name}_count(?:{{[^}}]*}})? (\S+)$"
    return sum(float(n) for n in re.findall(pattern, client.get("/metrics").text, re.MULTILINE))


def png_of(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.reshape(28, 28)).save(out, format="PNG")
    return out.getvalue()


def test_every_door_that_runs_the_model_is_counted_in_the_queue_wait(sample) -> None:  # noqa: ANN001
    images, _ = sample
    row = (images[:1] / 255).astype(np.float32)
    raw = base64.b64encode(images[:1].tobytes()).decode()
    v2_body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 784], "data": row.ravel().tolist()}]}
    with serve_in_process(app_settings()) as client:
        before = histogram_count(client, "mnist_queue_wait_seconds")
        answers = [
            client.post("/predict", json={"images": row.tolist()}),
            client.post("/predict_bytes", json={"data": raw}),
            client.post("/predict_image", files={"image": ("seven.png", png_of(images[0]), "image/png")}),
            client.post("/v2/models/default/infer", json=v2_body),
        ]
        assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
        assert histogram_count(client, "mnist_queue_wait_seconds") - before == 4
        client.post("/predict", json={"images": []})  # refused before it is queued: not counted
        assert histogram_count(client, "mnist_queue_wait_seconds") - before == 4


def test_uploads_are_shed_like_every_door_while_health_answers(sample) -> None:  # noqa: ANN001
    images, _ = sample
    upload = {"image": ("digit.png", png_of(images[0]), "image/png")}
    with serve_in_process(app_settings(batching=Batching(max_queue=2))) as client:
        batcher = bentoml.get_current_service().serving.batcher
        batcher._queued = 2  # noqa: SLF001 - two requests admitted and not yet answered
        shed = client.post("/predict_image", files=upload)
        assert (shed.status_code, shed.headers.get("retry-after")) == (503, "1"), shed.text
        assert client.get("/livez").status_code == 200
        assert client.get("/readyz").status_code == 200
        batcher._queued = 0  # noqa: SLF001
        assert client.post("/predict_image", files=upload).status_code == 200
