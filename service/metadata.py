"""The schema of `models/<name>/metadata.json`: what the service relies on, validated before it serves."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TensorSpec(BaseModel):
    name: str
    dtype: Literal["float32"]
    shape: list[int] = Field(min_length=2, max_length=2)  # [-1, features]; -1 is the batch axis
    range: list[float] | None = None


class FileEntry(BaseModel):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class ModelMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")  # provenance fields (config, commands, libraries) pass through

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
        if self.input.shape[1] != 784:
            raise ValueError(f"input.shape must be [-1, 784], got {self.input.shape}")
        outputs = self.output.shape[1]
        expected = {"softmax": 10, "sigmoid": 1}[self.head]
        if outputs != expected:
            raise ValueError(f"head {self.head} needs {expected} outputs, output.shape is {self.output.shape}")
        if len(self.labels) != max(outputs, 2):
            raise ValueError(f"{len(self.labels)} labels for {outputs} outputs")
        return self
