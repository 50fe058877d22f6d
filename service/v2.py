"""The Open Inference Protocol (v2) over HTTP, as Triton, KServe, MLServer and TorchServe speak it: requests to
pixels, answers to tensors. Plain code (no BentoML); service/doors.py routes `/v2/...` here and batches the
pixels through the same core as every other door.

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
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .decoding import unit_range
from .errors import ClientError
from .metadata import INPUT_WIDTH, ModelMetadata
from .runtime import ACTIVATIONS, Activation, InputError, validate_pixels
from .schemas import PredictResponse
from .settings import Batching, Limits

HEADER_LENGTH = "inference-header-content-length"  # the binary extension's header
INPUT_DATATYPES = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}
OUTPUTS = ("probabilities", "label")
EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics"]
# Triton numbers a model's versions and its tools read them as integers (perf_analyzer parses the statistics'
# `version` with stoll): the served model, whose own version is a hash, is also version "1" on the v2 routes.
TRITON_VERSION = "1"


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


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "mnist-serve", "version": version, "extensions": EXTENSIONS}


def model_metadata(meta: ModelMetadata) -> dict[str, Any]:
    classes = len(meta.labels) if meta.head == "softmax" else -1
    return {
        "name": meta.name,
        "versions": [meta.version],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": meta.input.name, "datatype": "FP32", "shape": [-1, meta.input.shape[1]]}],
        "outputs": [
            # one per label with softmax; the one-output (sigmoid) model gives 1 with sigmoid, 2 with softmax
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
        "parameters": {"activations": list(ACTIVATIONS), "default_activation": meta.head, "labels": meta.labels},
    }


def health(what: str) -> dict[str, Any]:
    """`GET /v2/health/live` or `/ready`: the body KServe's client reads (Triton's reads only the 200)."""
    return {what: True}


def model_ready(meta: ModelMetadata) -> dict[str, Any]:
    """`GET /v2/models/{name}/ready`, as KServe's server answers it; both clients read only the 200."""
    return {"name": meta.name, "ready": True}


def model_config(meta: ModelMetadata, limits: Limits, batching: Batching, provider: str) -> dict[str, Any]:
    """Triton's model configuration (model_config.proto's ModelConfig as JSON) for the served model.

    perf_analyzer reads `max_batch_size` (over 0: the inputs' first dimension is the batch), `dynamic_batching`
    and `input`/`output`. Triton's `max_batch_size` is the most a request may carry: here MNIST_MAX_IMAGES. The
    adaptive batcher's queue policy maps onto Triton's: a request waiting past MNIST_MAX_LATENCY_MS is
    rejected (503), and past MNIST_MAX_QUEUE requests a new one is. Fields with no meaning here are left out
    (optimization, model_warmup, sequence or ensemble scheduling, gpus); README's v2 section lists them.
    """
    classes = len(meta.labels) if meta.head == "softmax" else -1
    config: dict[str, Any] = {
        "name": meta.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"specific": {"versions": [int(TRITON_VERSION)]}},
        "max_batch_size": limits.max_images,
        "input": [{"name": meta.input.name, "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [INPUT_WIDTH]}],
        "output": [
            {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [classes]},
            {"name": "label", "data_type": "TYPE_STRING", "dims": [1], "reshape": {"shape": []}},
        ],
        "instance_group": [
            {
                "name": f"{meta.name}_0",
                "kind": "KIND_GPU" if provider.startswith("CUDA") else "KIND_CPU",
                "count": batching.workers,  # one ONNX Runtime session per worker process
            }
        ],
        "default_model_filename": "model.onnx",
        "parameters": {
            key: {"string_value": str(value)}
            for key, value in {
                "model_version": meta.version,  # the contract's version (a hash); Triton's is TRITON_VERSION
                "default_activation": meta.head,
                "activations": ",".join(ACTIVATIONS),
                "execution_provider": provider,
                "max_images_per_model_call": batching.max_batch_size if batching.enabled else limits.max_images,
            }.items()
        },
        "model_transaction_policy": {"decoupled": False},
        "response_cache": {"enable": False},
    }
    if batching.enabled:
        config["dynamic_batching"] = {
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": batching.max_latency_ms * 1000,
                "allow_timeout_override": False,
                "max_queue_size": batching.max_queue,
            }
        }
    return config


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
    if activation is not None and activation not in ACTIVATIONS:
        raise error(f"parameters.activation: must be one of {', '.join(ACTIVATIONS)}")
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
    if len(tensor.shape) not in (2, 3) or int(np.prod(tensor.shape[1:])) != INPUT_WIDTH or tensor.shape[0] < 1:
        raise error(f"input {tensor.name}: shape {tensor.shape}; expected [N, 784] or [N, 28, 28]")
    if tensor.shape[0] > max_rows:
        raise error(f"input {tensor.name}: {tensor.shape[0]} images in one request; the limit is {max_rows}")
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


Route = Literal["server", "live", "ready", "model", "model_ready", "infer", "config", "stats"]


def route(method: str, path: str) -> tuple[Route, str | None, str | None] | None:
    """`/v2/...` -> (what, model name, version); None for a path the protocol does not have."""
    parts = path.strip("/").split("/")
    if parts[0] != "v2":
        return None
    rest = parts[1:]
    if method == "GET" and rest == []:
        return "server", None, None
    if method == "GET" and rest in (["health", "live"], ["health", "ready"]):
        return ("live" if rest[1] == "live" else "ready"), None, None
    if method == "GET" and rest == ["models", "stats"]:
        return "stats", None, None  # every model's: this server's one
    if len(rest) < 2 or rest[0] != "models":
        return None
    name, version, tail = rest[1], None, rest[2:]
    if tail[:1] == ["versions"] and len(tail) >= 2:
        version, tail = tail[1], tail[2:]
    if method == "GET" and tail == []:
        return "model", name, version
    if method == "GET" and tail == ["ready"]:
        return "model_ready", name, version
    if method == "POST" and tail == ["infer"]:
        return "infer", name, version
    if method == "GET" and tail in (["config"], ["stats"]):
        return tail[0], name, version
    return None
