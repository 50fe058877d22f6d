"""The v2 door driven by the standard clients against a real `bentoml serve`, as a Triton or KServe user runs
them: NVIDIA's tritonclient, KServe's InferenceRESTClient and Triton's perf_analyzer (`pytest -m interop`).

The answers are compared with the served model run in-process, on the 512 MNIST test digits shipped with the
load tests (no MNIST download needed).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from loadtests import perf_analyzer
from loadtests.payloads import load_sample
from loadtests.server import running_service
from service.runtime import ModelRuntime, RuntimeConfig
from tests.conftest import MODELS_DIR

pytestmark = [pytest.mark.slow, pytest.mark.interop]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with running_service({"MNIST_MODEL": "default"}) as base:
        yield base


@pytest.fixture(scope="module")
def runtime() -> ModelRuntime:
    """The served model, in-process: what the server must answer."""
    return ModelRuntime(RuntimeConfig(models_dir=str(MODELS_DIR), model="default"))


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return (load_sample()[0] / 255).astype(np.float32)  # (512, 784)


def assert_same_answers(
    probabilities: np.ndarray, labels: list, runtime: ModelRuntime, pixels: np.ndarray, activation: str | None = None
) -> None:
    expected = runtime.predict(pixels, activation)
    np.testing.assert_allclose(probabilities, expected.probabilities, rtol=1e-6, atol=1e-7)
    as_text = [label.decode() if isinstance(label, bytes) else str(label) for label in labels]
    assert as_text == [runtime.metadata.labels[i] for i in expected.label_indices]


def stats(url: str) -> dict:
    (model,) = httpx.get(f"{url}/v2/models/default/stats").json()["model_stats"]
    return model


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient(url: str, runtime: ModelRuntime, pixels: np.ndarray, binary: bool) -> None:
    """NVIDIA's client: health, metadata, configuration, statistics, and inference with JSON or binary tensors."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url.removeprefix("http://"))
    assert [client.is_server_live(), client.is_server_ready(), client.is_model_ready("default")] == [True] * 3
    assert {"model_configuration", "statistics"} <= set(client.get_server_metadata()["extensions"])
    assert client.get_model_metadata("default")["inputs"][0]["name"] == runtime.metadata.input.name
    config = client.get_model_config("default")
    assert (config["name"], config["max_batch_size"], config["input"][0]["dims"]) == ("default", 1024, [784])
    before = stats(url)
    batch = pixels[:128]
    tensor = triton.InferInput(runtime.metadata.input.name, list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "label")]
    result = client.infer("default", [tensor], outputs=outputs, model_version="1", parameters={"activation": "sigmoid"})
    labels = list(result.as_numpy("label"))
    assert_same_answers(result.as_numpy("probabilities"), labels, runtime, batch, "sigmoid")
    (after,) = client.get_inference_statistics("default")["model_stats"]
    assert after["inference_count"] - before["inference_count"] == 128
    assert after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"] == 1


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_client(url: str, runtime: ModelRuntime, pixels: np.ndarray, binary: bool) -> None:
    """KServe's own v2 client: it reads the health bodies and puts model_name in the inference body."""
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.infer_type import RequestedOutput

    batch = pixels[128:256]

    async def session() -> tuple:
        async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=60)) as client:
            health = (
                await client.is_server_live(url),
                await client.is_server_ready(url),
                await client.is_model_ready(url, "default"),
            )
            tensor = InferInput("pixels", list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch, binary_data=binary)
            wanted = [RequestedOutput(name, {"binary_data": binary}) for name in ("probabilities", "label")]
            request = InferRequest("default", [tensor], request_id="kserve-1", request_outputs=wanted)
            return health, await client.infer(url, request, model_name="default")

    health, response = asyncio.run(session())
    assert health == (True, True, True)
    assert (response.id, response.model_name) == ("kserve-1", "default")
    outputs = {output.name: output.as_numpy() for output in response.outputs}
    assert_same_answers(outputs["probabilities"], list(outputs["label"]), runtime, batch)


def test_kserve_client_with_model_version_and_a_wrong_model_name(url: str, runtime: ModelRuntime) -> None:
    """A body naming the served version (the contract's hash, or Triton's 1) is answered; one naming another
    model is refused with 400, naming the field."""
    from kserve import InferenceRESTClient, RESTConfig

    def body(**fields: str) -> dict:
        return {**fields, "inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]}

    async def session() -> tuple:
        async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=60)) as client:
            answered = [
                await client.infer(url, body(model_name="default", model_version=version), model_name="default")
                for version in (runtime.metadata.version, "1")
            ]
            try:
                await client.infer(url, body(model_name="pigeon"), model_name="default")
            except httpx.HTTPStatusError as exc:
                return answered, exc.response
            return answered, None

    answered, refused = asyncio.run(session())
    assert [r.model_name for r in answered] == ["default", "default"]
    assert refused is not None
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("model_name:")


@pytest.fixture(scope="module")
def perf_analyzer_tool() -> perf_analyzer.PerfAnalyzer:
    """The binary from `python -m loadtests.perf_analyzer fetch`; a skip where it cannot run (a failure in CI)."""
    tool = perf_analyzer.installed()
    if problem := perf_analyzer.why_not_runnable(tool):
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    return tool


@pytest.mark.parametrize("tensor_format", ["json", "binary"])
def test_perf_analyzer_measures_the_service(
    url: str, pixels: np.ndarray, perf_analyzer_tool: perf_analyzer.PerfAnalyzer, tensor_format: str, tmp_path: Path
) -> None:
    """Triton's load tool reads the model's configuration and statistics, sends real digits for a few seconds
    at concurrency 2, and reports throughput, with no error on either side."""
    data = tmp_path / "digits.json"
    data.write_text(json.dumps({"data": [{"pixels": row.tolist()} for row in pixels[:32]]}))
    report = tmp_path / "report.csv"
    before = stats(url)
    done = subprocess.run(
        perf_analyzer_tool.command(
            "-m", "default", "-u", url.removeprefix("http://"), "--concurrency-range", "2",
            "--measurement-interval", "1000", "--stability-percentage", "1000", "--input-data", str(data),
            "--input-tensor-format", tensor_format, "--output-tensor-format", tensor_format, "-f", str(report),
        ),
        env=perf_analyzer_tool.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "error" not in output.lower(), output[-3000:]
    assert "Successful request count" in output, output[-3000:]  # it read the server's statistics
    (row,) = csv.DictReader(report.open())
    assert float(row["Inferences/Second"]) > 0
    after = stats(url)
    assert after["inference_stats"]["fail"] == before["inference_stats"]["fail"]
    assert after["inference_stats"]["success"]["count"] > before["inference_stats"]["success"]["count"]
