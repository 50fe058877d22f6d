"""The Open Inference Protocol (v2) door in-process: routes, metadata, JSON and binary inference, errors."""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest
from starlette.testclient import TestClient

from service import documents
from service.front import v2_route
from service.runtime import ModelRuntime
from service.settings import Batching, Limits

INFER = "/v2/models/default/infer"


def infer_json(pixels: np.ndarray, datatype: str = "FP32", **request: object) -> dict:
    data = pixels.astype(np.uint8 if datatype == "UINT8" else np.float32).tolist()
    tensor = {"name": "pixels", "shape": list(pixels.shape), "datatype": datatype, "data": data}
    return {"inputs": [tensor], **request}


def assert_v2_answers(body: dict, runtime: ModelRuntime, pixels: np.ndarray, activation: str | None) -> None:
    """The v2 outputs are what the runtime gives for `pixels` alone with `activation`. The protocol's answer does
    not name its activation, so the probabilities (softmax and sigmoid differ) carry that check."""
    outputs = {o["name"]: o for o in body["outputs"]}
    expected, meta = runtime.predict(pixels, activation), runtime.metadata
    assert (body["model_name"], body["model_version"]) == (meta.name, meta.version)
    assert outputs["label"]["data"] == [meta.labels[i] for i in expected.label_indices]
    got = np.array(outputs["probabilities"]["data"], np.float32).reshape(outputs["probabilities"]["shape"])
    np.testing.assert_allclose(got, expected.probabilities, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2", ("server", None, None)),
        ("/v2/health/live", ("live", None, None)),
        ("/v2/health/ready", ("ready", None, None)),
        ("/v2/models/default", ("model", "default", None)),
        ("/v2/models/default/versions/abc", ("model", "default", "abc")),
        ("/v2/models/default/ready", ("model_ready", "default", None)),
        ("/v2/models/default/versions/abc/ready", ("model_ready", "default", "abc")),
        ("/v2/models/default/config", ("config", "default", None)),
        ("/v2/models/default/versions/1/config", ("config", "default", "1")),
        ("/v2/models/default/stats", ("stats", "default", None)),
        ("/v2/models/default/versions/1/stats", ("stats", "default", "1")),
        ("/v2/models/stats", ("stats", None, None)),
        ("/v2/models", None),
        ("/v2/repository/index", None),
        ("/v3", None),
    ],
)
def test_routes(path: str, expected: tuple | None) -> None:
    assert v2_route("GET", path) == expected


def test_infer_is_a_post_and_nothing_else_is() -> None:
    assert v2_route("POST", INFER) == ("infer", "default", None)
    assert v2_route("GET", INFER) is None
    assert v2_route("POST", "/v2/models/default") is None


def test_server_and_health(client: TestClient) -> None:
    """The bodies KServe's and MLServer's servers send, which KServe's client reads (Triton's reads the 200)."""
    assert client.get("/v2").json() == {
        "name": "mnist-serve",
        "version": "1",
        "extensions": ["binary_tensor_data", "model_configuration", "statistics"],
    }
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/default/ready").json() == {"name": "default", "ready": True}


def test_the_served_version_is_also_tritons_version_1(client: TestClient, default_runtime: ModelRuntime) -> None:
    for version in (default_runtime.metadata.version, "1"):
        assert client.get(f"/v2/models/default/versions/{version}/ready").status_code == 200
    assert client.get("/v2/models/default/versions/2/ready").status_code == 404


def test_model_metadata_describes_the_served_model(client: TestClient, default_runtime: ModelRuntime) -> None:
    meta = default_runtime.metadata
    body = client.get("/v2/models/default").json()
    assert (body["name"], body["versions"], body["platform"]) == ("default", [meta.version], "onnxruntime_onnx")
    assert body["inputs"] == [{"name": meta.input.name, "datatype": "FP32", "shape": [-1, 784]}]
    assert body["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]
    assert client.get(f"/v2/models/default/versions/{meta.version}").json() == body
    # what a caller may ask for in `parameters.activation`, and what it gets when it asks for nothing
    assert body["parameters"] == {
        "activations": ["softmax", "sigmoid"],
        "default_activation": "softmax",
        "labels": [str(d) for d in range(10)],
    }


@pytest.mark.parametrize("activation", [None, "softmax", "sigmoid"])
def test_json_inference_answers_as_the_runtime(
    client: TestClient, default_runtime: ModelRuntime, sample, activation
) -> None:  # noqa: ANN001
    pixels = sample[0][:5] / 255
    parameters = {"activation": activation} if activation else {}
    response = client.post(INFER, json=infer_json(pixels, parameters=parameters, id="req-1"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "req-1"
    assert_v2_answers(body, default_runtime, pixels.astype(np.float32), activation)


def test_uint8_is_scaled_like_float(client: TestClient, sample) -> None:  # noqa: ANN001
    as_uint8 = client.post(INFER, json=infer_json(sample[0][:4], "UINT8")).json()
    as_float = client.post(INFER, json=infer_json(sample[0][:4] / 255)).json()
    assert as_uint8["outputs"] == as_float["outputs"]


def test_binary_tensors_in_and_out(client: TestClient, default_runtime: ModelRuntime, sample) -> None:  # noqa: ANN001
    pixels = (sample[0][:3] / 255).astype(np.float32)
    blob = pixels.tobytes()
    tensor = {"name": "pixels", "shape": [3, 784], "datatype": "FP32", "parameters": {"binary_data_size": len(blob)}}
    head = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()
    response = client.post(
        INFER,
        content=head + blob,
        headers={"inference-header-content-length": str(len(head)), "content-type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    assert response.headers.get_list("content-type") == ["application/octet-stream"]  # one, and not JSON's
    split = int(response.headers["inference-header-content-length"])
    header, data = json.loads(response.content[:split]), response.content[split:]
    probabilities_out, label_out = header["outputs"]
    size = probabilities_out["parameters"]["binary_data_size"]
    probabilities = np.frombuffer(data[:size], "<f4").reshape(probabilities_out["shape"])
    labels, rest = [], data[size:]
    while rest:
        (n,) = struct.unpack("<I", rest[:4])
        labels.append(rest[4 : 4 + n].decode())
        rest = rest[4 + n :]
    assert label_out["parameters"]["binary_data_size"] == len(data) - size
    expected = default_runtime.predict(pixels)
    np.testing.assert_allclose(probabilities, expected.probabilities, rtol=1e-6, atol=1e-7)
    assert labels == [default_runtime.metadata.labels[i] for i in expected.label_indices]


def test_only_the_requested_outputs_binary_where_asked(client: TestClient, sample) -> None:  # noqa: ANN001
    request = infer_json(sample[0][:2] / 255, outputs=[{"name": "label", "parameters": {"binary_data": False}}])
    body = client.post(INFER, json=request).json()
    assert [o["name"] for o in body["outputs"]] == ["label"]
    assert "data" in body["outputs"][0]


@pytest.mark.parametrize(
    ("request_body", "status", "message"),
    [
        (
            {"inputs": [{"name": "x", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]},
            400,
            "unknown input 'x'",
        ),
        (
            {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "INT64", "data": [0] * 784}]},
            400,
            "INT64 is not supported",
        ),
        (
            {"inputs": [{"name": "pixels", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}]},
            400,
            r"expected shape \(N, 784\) or \(N, 28, 28\), got \(1, 10\)",
        ),
        (
            {"inputs": [{"name": "pixels", "shape": [2, 784], "datatype": "FP32", "data": [0.0] * 784}]},
            400,
            "784 values for shape",
        ),
        (
            {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [2.0] * 784}]},
            400,
            r"in \[0, 1\]",
        ),
        ({"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "UINT8", "data": [300] * 784}]}, 400, "0..255"),
        ({"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32"}]}, 400, "no data"),
        ({"inputs": [{"name": "pixels", "shape": [2000, 784], "datatype": "FP32", "data": []}]}, 400, "limit is 1024"),
        ({"inputs": []}, 400, "at least 1 item"),
        (
            {
                "inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}],
                "parameters": {"activation": "relu"},
            },
            400,
            "activation: must be one of",
        ),
        (
            {
                "inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}],
                "outputs": [{"name": "logits"}],
            },
            400,
            "unknown output 'logits'",
        ),
    ],
)
def test_bad_inference_requests_get_the_protocol_error_form(
    client: TestClient, request_body: dict, status: int, message: str
) -> None:
    response = client.post(INFER, json=request_body)
    assert response.status_code == status
    assert set(response.json()) == {"error"}
    assert re.search(message, response.json()["error"]), response.json()


def test_another_model_or_version_is_404(client: TestClient) -> None:
    assert client.get("/v2/models/pigeon").status_code == 404
    assert client.get("/v2/models/default/versions/0/ready").status_code == 404
    assert client.get("/v2/nothing").status_code == 404


def test_a_binary_size_that_does_not_match_is_refused(client: TestClient) -> None:
    tensor = {"name": "pixels", "shape": [1, 784], "datatype": "FP32", "parameters": {"binary_data_size": 784 * 4}}
    head = json.dumps({"inputs": [tensor]}).encode()
    response = client.post(
        INFER,
        content=head + b"\0" * 100,
        headers={"inference-header-content-length": str(len(head)), "content-type": "application/octet-stream"},
    )
    assert response.status_code == 400
    assert "binary_data_size 3136, 100 bytes sent" in response.json()["error"]
    response = client.post(
        INFER,
        content=head,
        headers={"inference-header-content-length": "99999", "content-type": "application/octet-stream"},
    )
    assert "is not a length within the body" in response.json()["error"]


def test_the_load_tests_v2_scenario_is_answered_and_checked(client: TestClient) -> None:
    """loadtests' v2-N bodies get right answers, and the load tests' check reads the binary answer back."""
    from loadtests.payloads import build_requests, check_answer, load_sample

    (request,) = build_requests("v2-4", load_sample()[0], pool=1)
    response = client.post(request.path, content=request.body, headers=request.headers)
    assert response.status_code == 200, response.text
    assert check_answer(response.content, response.headers, request) is None
    split = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:split])
    size = header["outputs"][0]["parameters"]["binary_data_size"]
    swapped = np.frombuffer(response.content[split : split + size], "<f4")[::-1].astype("<f4").tobytes()
    wrong = response.content[:split] + swapped + response.content[split + size :]
    assert check_answer(wrong, response.headers, request) is not None


def test_body_fields_naming_the_served_model_are_accepted(
    client: TestClient, default_runtime: ModelRuntime, sample
) -> None:  # noqa: ANN001
    """KServe's client puts model_name (and may put model_version) in the body beside the inputs."""
    pixels = sample[0][:1] / 255
    version = default_runtime.metadata.version
    for fields in (
        {"model_name": "default"},
        {"model_name": "default", "model_version": version},
        {"model_version": "1"},
    ):
        response = client.post(INFER, json=infer_json(pixels, **fields))
        assert response.status_code == 200, (fields, response.text)


@pytest.mark.parametrize(
    ("path", "fields", "message"),
    [
        (INFER, {"model_name": "pigeon"}, r"^model_name: 'pigeon' in the body, but the path asks for model 'default'"),
        ("/v2/models/default/versions/1/infer", {"model_name": "Default"}, r"^model_name: 'Default'"),
        (INFER, {"model_name": "default", "model_version": "2"}, r"^model_version: '2' in the body"),
    ],
)
def test_body_fields_that_contradict_the_path_are_refused_naming_the_field(
    client: TestClient, sample, path: str, fields: dict, message: str
) -> None:  # noqa: ANN001
    response = client.post(path, json=infer_json(sample[0][:1] / 255, **fields))
    assert response.status_code == 400
    assert re.search(message, response.json()["error"]), response.json()


def test_unknown_top_level_fields_are_ignored_but_a_tensors_are_not(client: TestClient, sample) -> None:  # noqa: ANN001
    """As Triton's and KServe's servers do: clients add fields of their own to the request."""
    request = infer_json(sample[0][:1] / 255, priority=3, trace={"span": "x"})
    assert client.post(INFER, json=request).status_code == 200
    request["inputs"][0]["colour"] = "red"
    response = client.post(INFER, json=request)
    assert response.status_code == 400
    assert response.json()["error"].startswith("inputs[0].colour: unknown field")


def test_model_configuration_is_tritons_for_the_served_model(client: TestClient, default_runtime: ModelRuntime) -> None:
    meta, batching = default_runtime.metadata, Batching()  # the client fixture's settings: the defaults
    config = client.get("/v2/models/default/config").json()
    assert client.get("/v2/models/default/versions/1/config").json() == config
    assert (config["name"], config["platform"], config["max_batch_size"]) == ("default", "onnxruntime_onnx", 1024)
    assert config["input"] == [
        {"name": meta.input.name, "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [784]}
    ]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        ("probabilities", "TYPE_FP32", [10]),
        ("label", "TYPE_STRING", [1]),
    ]
    assert config["dynamic_batching"]["default_queue_policy"] == {
        "timeout_action": "REJECT",
        "default_timeout_microseconds": batching.max_latency_ms * 1000,
        "allow_timeout_override": False,
        "max_queue_size": batching.max_queue,
    }
    assert config["parameters"]["model_version"] == {"string_value": meta.version}
    assert config["parameters"]["execution_provider"] == {"string_value": default_runtime.provider}
    assert config["instance_group"][0]["count"] == batching.workers


def test_model_configuration_follows_the_settings_and_the_head(pigeon_runtime: ModelRuntime) -> None:
    config = documents.model_config(
        pigeon_runtime.metadata, Limits(max_images=16), Batching(enabled=False, workers=3), "CUDAExecutionProvider"
    )
    assert "dynamic_batching" not in config  # each request its own model call: nothing for Triton to batch
    assert config["max_batch_size"] == 16
    assert config["parameters"]["max_images_per_model_call"] == {"string_value": "16"}
    assert config["instance_group"][0] | {"name": ""} == {"name": "", "kind": "KIND_GPU", "count": 3}
    assert config["output"][0]["dims"] == [-1]  # one output with sigmoid, two with softmax


def test_statistics_count_every_door_that_ran_the_model(client: TestClient, sample) -> None:  # noqa: ANN001
    """Three v2 requests of two images, one /predict of one image, one refused request; sent one by one, so
    each is its own model execution."""

    def stats(path: str = "/v2/models/default/stats") -> dict:
        (model,) = client.get(path).json()["model_stats"]
        return model

    before = stats()
    for start in (0, 2, 4):
        assert client.post(INFER, json=infer_json(sample[0][start : start + 2] / 255)).status_code == 200
    assert client.post("/predict", json={"images": (sample[0][6:7] / 255).tolist()}).status_code == 200
    assert client.post(INFER, json=infer_json(sample[0][:1] * 2.0)).status_code == 400  # never reached the model
    after = stats()
    assert (after["name"], after["version"]) == ("default", "1")
    assert after["inference_count"] - before["inference_count"] == 7
    assert after["execution_count"] - before["execution_count"] == 4
    inference, earlier = after["inference_stats"], before["inference_stats"]
    for key in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert inference[key]["count"] - earlier[key]["count"] == 4, key
        assert inference[key]["ns"] > earlier[key]["ns"], key
    assert inference["fail"] == earlier["fail"]
    success_ns = inference["success"]["ns"] - earlier["success"]["ns"]
    assert success_ns >= inference["compute_infer"]["ns"] - earlier["compute_infer"]["ns"]  # a part of it
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in after["batch_stats"]}
    assert sizes[2] >= 3
    assert sizes[1] >= 1
    assert after["last_inference"] >= max(before["last_inference"], 1)  # milliseconds since the epoch
    assert stats("/v2/models/stats")["inference_count"] == after["inference_count"]  # every model's: this one
