"""One contract for metadata.json: the service's pydantic models, and the JSON Schema written from them that
training validates against. They must agree, and both must refuse what the service cannot serve."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
from pydantic import ValidationError

from service.artifact import SCHEMA_PATH, ModelMetadata, json_schema
from tests.conftest import MODELS_DIR

SHIPPED = ["default", "fast", "pigeon", "mnist-nn"]


def shipped(name: str) -> dict:
    return json.loads((MODELS_DIR / name / "metadata.json").read_text())


def file_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def test_the_checked_in_schema_is_written_from_the_service_models() -> None:
    """When this fails, run `python -m service.artifact` and commit models/metadata.schema.json."""
    assert json.loads(SCHEMA_PATH.read_text()) == json_schema()
    jsonschema.Draft202012Validator.check_schema(json_schema())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_metadata_keeps_the_contract(name: str) -> None:
    meta = shipped(name)
    assert list(file_validator().iter_errors(meta)) == []
    ModelMetadata.model_validate(meta)


def set_path(meta: dict, path: str, value: object) -> dict:
    broken = copy.deepcopy(meta)
    *parents, last = path.split(".")
    target = broken
    for key in parents:
        target = target[key]
    target[last] = value
    return broken


@pytest.mark.parametrize(
    ("model", "path", "value"),
    [
        ("pigeon", "head", "softmax"),  # one output under a ten-class head
        ("default", "head", "sigmoid"),
        ("default", "labels", ["0", "1", "2"]),
        ("default", "input.shape", [-1, 100]),
        ("default", "input.dtype", "float64"),
        ("default", "output.shape", [-1, 10, 1]),
        ("default", "schema_version", 2),
        ("default", "files", {"model.onnx": {"sha256": "not-a-hash", "bytes": 1}}),
    ],
)
def test_both_refuse_what_the_service_cannot_serve(model: str, path: str, value: object) -> None:
    broken = set_path(shipped(model), path, value)
    assert list(file_validator().iter_errors(broken)), f"the JSON Schema lets {path}={value!r} through"
    with pytest.raises(ValidationError):
        ModelMetadata.model_validate(broken)
