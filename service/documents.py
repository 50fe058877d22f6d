"""What the service says about its model, in one place: the body of `GET /metadata` (`model_info`) and the
Open Inference Protocol's documents (server and model metadata, health, readiness, Triton's model
configuration). Each is built from the same three facts: the model's metadata.json, the runtime's execution
provider and the settings. Plain code: service/front.py answers the routes with them.
"""

from __future__ import annotations

from typing import Any

from .artifact import INPUT_WIDTH, ModelMetadata
from .heads import OUTPUT_ACTIVATIONS, output_width
from .runtime import ModelRuntime
from .schemas import BatchingInfo, ModelInfo
from .settings import Batching, Limits, ServiceSettings

SERVER_VERSION = "1"  # of this server's v2 door, as `GET /v2` reports it
EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics"]
# Triton numbers a model's versions and its tools read them as integers (perf_analyzer parses the statistics'
# `version` with stoll): the served model, whose own version is a hash, is also version "1" on the v2 routes.
TRITON_VERSION = "1"


def model_info(runtime: ModelRuntime, settings: ServiceSettings) -> ModelInfo:
    """The body of GET /metadata: the served model, the execution provider in use, batching and limits."""
    meta = runtime.metadata
    batching, limits = settings.batching, settings.limits
    return ModelInfo(
        name=meta.name,
        version=meta.version,
        head=meta.head,
        labels=meta.labels,
        activations=list(OUTPUT_ACTIVATIONS),
        input=meta.input.model_dump(),
        output=meta.output.model_dump(),
        test_accuracy=meta.metrics.get("test_accuracy"),
        metrics=meta.metrics,
        execution_provider=runtime.provider,
        cpu_difference=runtime.cpu_difference,
        batching=BatchingInfo(
            enabled=batching.enabled,
            max_batch_size=batching.max_batch_size,
            max_latency_ms=batching.max_latency_ms,
            workers=batching.workers,
            ort_intra_op_threads=runtime.config.intra_op_threads,
        ),
        limits={
            "max_images_per_request": limits.max_images,
            "max_body_bytes": limits.max_body_bytes,
            "max_queued_requests": batching.max_queue,
        },
        startup_seconds=round(runtime.startup_seconds, 3),
    )


def server_metadata(version: str = SERVER_VERSION) -> dict[str, Any]:
    return {"name": "mnist-serve", "version": version, "extensions": EXTENSIONS}


def model_metadata(meta: ModelMetadata) -> dict[str, Any]:
    classes = output_width(meta.head, len(meta.labels))
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
        "parameters": {"activations": list(OUTPUT_ACTIVATIONS), "default_activation": meta.head, "labels": meta.labels},
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
    classes = output_width(meta.head, len(meta.labels))
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
                "activations": ",".join(OUTPUT_ACTIVATIONS),
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
