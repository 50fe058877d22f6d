"""Every answer has the shapes and datatypes the service advertises for its model: the v2 model metadata
(GET /v2/models/<name>: each output's datatype and shape, -1 for any size) for v2 answers, JSON and binary,
and GET /metadata (labels, output width) for the JSON routes. A client sizes its buffers from the former and
reads labels from the latter; an answer that differs breaks it even when its numbers are right."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import numpy as np
import pytest
from starlette.testclient import TestClient

from service.runtime import RuntimeConfig
from tests.conftest import MODELS_DIR
from tests.service.conftest import app_settings, serve_in_process

ITEM_BYTES = {"FP32": 4, "UINT8": 1}


@pytest.fixture(scope="module", params=["default", "pigeon"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, TestClient]]:
    settings = app_settings(runtime=RuntimeConfig(models_dir=str(MODELS_DIR), model=request.param))
    with serve_in_process(settings) as client:
        yield request.param, client


def pixels(n: int) -> np.ndarray:
    return np.random.default_rng(n).random((n, 784), dtype=np.float32)


def assert_fits(declared: dict, shape: list[int], datatype: str, rows: int) -> None:
    """`shape`/`datatype` of an answer's output as `declared` says: same datatype, same rank, each declared size
    (other than -1) equal, and the batch dimension the request's rows."""
    assert datatype == declared["datatype"], declared["name"]
    assert len(shape) == len(declared["shape"]), (declared["name"], shape)
    assert all(d in (-1, s) for d, s in zip(declared["shape"], shape, strict=True)), (declared["name"], shape)
    assert shape[0] == rows


def bytes_elements(blob: bytes) -> list[str]:
    """BYTES tensor data: each element a 4-byte little-endian length, then its bytes."""
    out = []
    while blob:
        n = int.from_bytes(blob[:4], "little")
        out.append(blob[4 : 4 + n].decode())
        blob = blob[4 + n :]
    return out


@pytest.mark.parametrize("activation", [None, "softmax", "sigmoid"])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_v2_answers_have_the_declared_shapes_and_datatypes(
    served: tuple[str, TestClient], activation: str | None, binary: bool
) -> None:
    name, client = served
    declared = {o["name"]: o for o in client.get(f"/v2/models/{name}").json()["outputs"]}
    rows = 3
    body = {
        "inputs": [{"name": "pixels", "shape": [rows, 784], "datatype": "FP32", "data": pixels(rows).ravel().tolist()}],
        "parameters": {"binary_data_output": binary} | ({"activation": activation} if activation else {}),
    }
    response = client.post(f"/v2/models/{name}/infer", json=body)
    assert response.status_code == 200, response.text
    length = response.headers.get("inference-header-content-length")
    header = json.loads(response.content[: int(length)] if binary else response.content)
    data = response.content[int(length) :] if binary else b""
    assert sorted(o["name"] for o in header["outputs"]) == sorted(declared)
    for output in header["outputs"]:
        spec, shape = declared[output["name"]], output["shape"]
        assert_fits(spec, shape, output["datatype"], rows)
        elements = math.prod(shape)
        if binary:
            size = output["parameters"]["binary_data_size"]
            blob, data = data[:size], data[size:]
            if output["datatype"] == "BYTES":
                assert len(bytes_elements(blob)) == elements
            else:
                assert size == elements * ITEM_BYTES[output["datatype"]]
        else:
            assert len(output["data"]) == elements
    assert data == b""  # nothing after the last output
    width = next(o for o in header["outputs"] if o["name"] == "probabilities")["shape"][1]
    labels = client.get(f"/v2/models/{name}").json()["parameters"]["labels"]
    assert width == expected_width(name, activation, labels)


def expected_width(name: str, activation: str | None, labels: list[str]) -> int:
    """Probabilities per image, as the README says: one per label with softmax (the one-output model: [1 - p, p]),
    one per model output with sigmoid."""
    outputs = 1 if name == "pigeon" else 10
    chosen = activation or ("sigmoid" if name == "pigeon" else "softmax")
    return len(labels) if chosen == "softmax" else outputs


@pytest.mark.parametrize("activation", [None, "softmax", "sigmoid"])
def test_json_answers_have_the_widths_and_labels_the_metadata_advertises(
    served: tuple[str, TestClient], activation: str | None
) -> None:
    name, client = served
    meta = client.get("/metadata").json()
    assert meta["output"]["shape"][1] == (1 if name == "pigeon" else 10)  # the model's own outputs
    rows = pixels(4)
    responses = [
        client.post("/predict", json={"images": rows.tolist(), "activation": activation}),
        client.post("/predict_bytes", json={"data": base64_rows(rows), "dtype": "float32", "activation": activation}),
    ]
    for response in responses:
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["activation"] == (activation or meta["head"])
        assert (answer["model"], answer["version"]) == (meta["name"], meta["version"])
        assert len(answer["predictions"]) == len(rows)
        width = expected_width(name, activation, meta["labels"])
        for prediction in answer["predictions"]:
            assert len(prediction["probabilities"]) == width
            assert prediction["label"] in meta["labels"]


def base64_rows(rows: np.ndarray) -> str:
    import base64

    return base64.b64encode(rows.astype(np.float32).tobytes()).decode()
