"""The artifact contract: `models/<name>/` as training writes it and the service reads it, defined once.

`metadata.json`'s models below are what the service validates before it serves (`load_metadata`, which also
checks model.onnx's sha256); `models/metadata.schema.json`, written from them, is what training validates
against before it writes. Training imports this module and nothing else of service/ (the file hash and the
device names are the two sides' shared words); it needs only pydantic and the standard library.

    python -m service.artifact            # rewrite models/metadata.schema.json after changing the models below

tests/service/test_metadata_schema.py fails when the checked-in schema and these models disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ModelLoadError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "models" / "metadata.schema.json"
IMAGE_SIDE = 28  # MNIST's pictures
INPUT_WIDTH = IMAGE_SIDE * IMAGE_SIDE  # the model's input row: one picture, row-major
# Where a model runs, as `python -m training.train --device` and MNIST_DEVICE both take it: auto (CUDA when
# present, else the CPU), cuda or cpu.
DEVICES = ("auto", "cuda", "cpu")
# What the service's checks below say, in JSON Schema terms, for validators that read only the file.
HEAD_RULES = [
    {
        "if": {"properties": {"head": {"const": head}}},
        "then": {
            "properties": {
                "output": {"properties": {"shape": {"prefixItems": [{"const": -1}, {"const": outputs}]}}},
                "labels": {"minItems": labels, "maxItems": labels},
            }
        },
    }
    for head, outputs, labels in (("softmax", 10, 10), ("sigmoid", 1, 2))
]
INPUT_SHAPE = {"prefixItems": [{"const": -1}, {"const": INPUT_WIDTH}]}
INPUT_RULE = {"properties": {"input": {"properties": {"shape": INPUT_SHAPE}}}}


class TensorSpec(BaseModel):
    name: str
    dtype: Literal["float32"]
    shape: list[int] = Field(min_length=2, max_length=2)  # [-1, features]; -1 is the batch axis
    range: list[float] | None = None


class FileEntry(BaseModel):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class ModelMetadata(BaseModel):
    # provenance fields (config, commands, libraries, parity...) pass through
    model_config = ConfigDict(extra="allow", json_schema_extra={"allOf": [INPUT_RULE, *HEAD_RULES]})

    schema_version: Literal[1]
    name: str
    version: str
    head: Literal["softmax", "sigmoid"]
    labels: list[str]
    input: TensorSpec
    output: TensorSpec
    metrics: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileEntry]

    @model_validator(mode="after")
    def _consistent(self) -> ModelMetadata:
        if self.input.shape[1] != INPUT_WIDTH:
            raise ValueError(f"input.shape must be [-1, {INPUT_WIDTH}], got {self.input.shape}")
        outputs = self.output.shape[1]
        expected = {"softmax": 10, "sigmoid": 1}[self.head]
        if outputs != expected:
            raise ValueError(f"head {self.head} needs {expected} outputs, output.shape is {self.output.shape}")
        if len(self.labels) != max(outputs, 2):
            raise ValueError(f"{len(self.labels)} labels for {outputs} outputs")
        return self


def sha256_of(path: Path) -> str:
    """The hash metadata.json's `files` records: export writes it, the service checks it before it serves."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load_metadata(model_dir: Path) -> ModelMetadata:
    """Read and validate metadata.json and check the sha256 of model.onnx, the one file the service loads."""
    meta_path = model_dir / "metadata.json"
    if not meta_path.exists():
        raise ModelLoadError(f"{meta_path} not found: export a model there with `python -m training.export`")
    try:
        metadata = ModelMetadata.model_validate(json.loads(meta_path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ModelLoadError(f"{meta_path} does not describe a servable model: {exc}") from exc
    if "model.onnx" not in metadata.files:
        raise ModelLoadError(f"{meta_path} lists no model.onnx")
    path, expected = model_dir / "model.onnx", metadata.files["model.onnx"].sha256
    if not path.exists():
        raise ModelLoadError(f"{path} is missing (listed in {meta_path})")
    actual = sha256_of(path)
    if actual != expected:
        raise ModelLoadError(
            f"{path} does not match its metadata: sha256 {actual[:12]}... != {expected[:12]}...; "
            "the file is corrupt or was replaced without re-exporting"
        )
    return metadata


def json_schema() -> dict[str, Any]:
    """The JSON Schema of metadata.json, from ModelMetadata."""
    schema = ModelMetadata.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def write_schema(path: Path = SCHEMA_PATH) -> None:
    """Atomically: a reader never sees half a schema."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(json_schema(), indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    path = Path(argv[0]) if argv else SCHEMA_PATH
    write_schema(path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
