"""The Open Inference Protocol's (v2) inference codec, as Triton, KServe, MLServer and TorchServe speak it: an
infer request (JSON, or JSON + binary tensor data) -> pixels and the answer's form; a response -> tensors.
Plain code (no BentoML). service/front.py routes `/v2/...` (its `v2_route`) and admits and batches the pixels
like every other door's; the GET routes' documents are service/documents.py's.

    GET  /v2                                   server metadata
    GET  /v2/health/live, /v2/health/ready     200 {"live": true} / {"ready": true}
    GET  /v2/models/{name}[/versions/{v}]      model metadata: inputs, outputs, datatypes, shapes
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer
    GET  /v2/models/{name}[/versions/{v}]/config   Triton's model configuration extension
    GET  /v2/models[/{name}[/versions/{v}]]/stats  Triton's statistics extension (service/stats.py)

Inference input: the model's input tensor, FP32 [N, 784] in [0, 1] (UINT8 accepted and scaled by 1/255), as
JSON `data` or, with the binary tensor data extension, raw little-endian bytes after the JSON header
(`Inference-Header-Content-Length`). Request parameter `activation`: softmax or sigmoid (default: the
model's head). Outputs: `probabilities` FP32 [N, k] and `label` BYTES [N]; each in JSON, or binary when
the output asks `binary_data` or the request sets `binary_data_output`. Errors: `{"error": "..."}`, 400.

What the standard clients send is accepted: KServe's puts `model_name` (and may put `model_version`) in the
body, checked against the path (400 naming the field when they differ); any other unknown top-level field is
ignored, as Triton's and KServe's servers ignore it. A tensor's fields stay strict (400 naming the field).
The health routes answer `{"live": true}` / `{"ready": true}` as KServe's and MLServer's servers do: KServe's
client reads the body, Triton's reads only the status.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..artifact import INPUT_WIDTH
from ..errors import ClientError, InputError
from ..heads import OUTPUT_ACTIVATIONS, Activation
from ..schemas import PredictResponse
from .pixels import check_images, unit_range, validate_pixels

HEADER_LENGTH = "inference-header-content-length"  # the binary extension's header
INPUT_DATATYPES = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}
OUTPUTS = ("probabilities", "label")


class Tensor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = None


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferenceRequest(BaseModel):
    """Unknown top-level fields are ignored (Triton and KServe ignore them; clients add their own)."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    id: str | None = None
    model_name: str | None = None  # KServe's client sends it; must match the path
    model_version: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[Tensor] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = None


@dataclass
class Inference:
    """A decoded v2 request: what the core needs, and how to answer."""

    id: str | None
    pixels: np.ndarray  # (N, 784) float32 in [0, 1]
    activation: Activation | None
    outputs: list[str] = field(default_factory=lambda: list(OUTPUTS))
    binary: set[str] = field(default_factory=set)  # outputs to send as binary tensor data


def error(message: str, status: int = 400) -> ClientError:
    return ClientError(status, message)


def check_model(request: InferenceRequest, model: str, versions: Collection[str]) -> None:
    """`model_name` / `model_version` in the body (KServe's client sends them) must name what the path does."""
    if request.model_name is not None and request.model_name != model:
        raise error(f"model_name: {request.model_name!r} in the body, but the path asks for model {model!r}")
    if request.model_version is not None and request.model_version not in versions:
        raise error(
            f"model_version: {request.model_version!r} in the body, but model {model!r} is served as version "
            + " or ".join(repr(v) for v in versions)
        )


def parse_inference(
    body: bytes,
    header_length: str | None,
    input_name: str,
    max_rows: int,
    model: str | None = None,
    versions: Collection[str] = (),
) -> Inference:
    """The request body (JSON, or JSON + binary tensor data) -> pixels and the answer's form; ClientError 400.
    `model` and `versions`: the served model's name and version names, which the body's model_name and
    model_version must match (the path already does); None checks neither."""
    if header_length is None:
        header, binary = body, b""
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise error(f"Inference-Header-Content-Length {header_length!r} is not a length within the body")
        header, binary = body[: int(header_length)], body[int(header_length) :]
    try:
        request = InferenceRequest.model_validate_json(header)
    except ValidationError as exc:
        raise error(ClientError.from_validation(exc).message) from None
    if model is not None:
        check_model(request, model, versions)
    (tensor,) = request.inputs
    if tensor.name != input_name:
        raise error(f"unknown input {tensor.name!r}; the model's input is {input_name!r}")
    pixels = input_pixels(tensor, binary, max_rows)
    activation = request.parameters.get("activation")
    if activation is not None and activation not in OUTPUT_ACTIVATIONS:
        raise error(f"parameters.activation: must be one of {', '.join(OUTPUT_ACTIVATIONS)}")
    wanted = [o.name for o in request.outputs] if request.outputs else list(OUTPUTS)
    if unknown := [name for name in wanted if name not in OUTPUTS]:
        raise error(f"unknown output {unknown[0]!r}; outputs: {', '.join(OUTPUTS)}")
    binary_all = bool(request.parameters.get("binary_data_output", False))
    binary_out = {o.name for o in request.outputs or [] if o.parameters.get("binary_data", binary_all)}
    if binary_all and not request.outputs:
        binary_out = set(OUTPUTS)
    return Inference(request.id, pixels, activation, wanted, binary_out)


def input_pixels(tensor: Tensor, binary: bytes, max_rows: int) -> np.ndarray:
    dtype = INPUT_DATATYPES.get(tensor.datatype)
    if dtype is None:
        raise error(f"input {tensor.name}: datatype {tensor.datatype} is not supported; use FP32 or UINT8")
    try:
        check_images(f"input {tensor.name}", tensor.shape, max_rows)  # before any data is read
    except InputError as exc:
        raise error(str(exc)) from None
    count = int(np.prod(tensor.shape))
    size = tensor.parameters.get("binary_data_size")
    if size is not None:
        if size != len(binary) or size != count * dtype.itemsize:
            raise error(
                f"input {tensor.name}: binary_data_size {size}, {len(binary)} bytes sent, "
                f"shape needs {count * dtype.itemsize}"
            )
        array = np.frombuffer(binary, dtype=dtype)
    elif tensor.data is None:
        raise error(f"input {tensor.name}: no data (send `data`, or binary_data_size and the bytes)")
    else:
        try:
            array = np.asarray(tensor.data, dtype=np.float64 if dtype.kind == "f" else np.int64).reshape(-1)
        except (TypeError, ValueError):
            raise error(f"input {tensor.name}: data must be {count} numbers") from None
        if array.size != count:
            raise error(f"input {tensor.name}: {array.size} values for shape {tensor.shape}")
        if dtype.kind == "u":
            if array.min() < 0 or array.max() > 255:
                raise error(f"input {tensor.name}: UINT8 values must be 0..255")
            array = array.astype(np.uint8)
    try:
        pixels = unit_range(array.reshape(tensor.shape[0], INPUT_WIDTH))
        return validate_pixels(pixels, f"input {tensor.name}", max_rows)
    except InputError as exc:
        raise error(str(exc)) from None


def encode_response(
    response: PredictResponse, inference: Inference, model: str, version: str
) -> tuple[bytes, dict[str, str]]:
    """The v2 response body and its extra headers (the binary extension's, when any output is binary)."""
    rows = len(response.predictions)
    tensors: dict[str, tuple[str, list[int], np.ndarray | list[str]]] = {}
    if "probabilities" in inference.outputs:
        probabilities = np.array([p.probabilities for p in response.predictions], dtype=np.float32)
        tensors["probabilities"] = ("FP32", list(probabilities.shape), probabilities)
    if "label" in inference.outputs:
        tensors["label"] = ("BYTES", [rows], [p.label for p in response.predictions])
    outputs, blobs = [], []
    for name in inference.outputs:
        datatype, shape, values = tensors[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if name in inference.binary:
            blob = values.astype("<f4").tobytes() if datatype == "FP32" else bytes_tensor(values)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = values.reshape(-1).tolist() if datatype == "FP32" else values
        outputs.append(entry)
    header = {"model_name": model, "model_version": version, "outputs": outputs}
    if inference.id is not None:
        header["id"] = inference.id
    head = json.dumps(header).encode()
    if not blobs:
        return head, {}
    return head + b"".join(blobs), {HEADER_LENGTH: str(len(head)), "content-type": "application/octet-stream"}


def bytes_tensor(values: list[str]) -> bytes:
    """The binary extension's BYTES encoding: each element as a 4-byte little-endian length, then its bytes."""
    out = bytearray()
    for value in values:
        raw = value.encode()
        out += struct.pack("<I", len(raw)) + raw
    return bytes(out)
