"""The service's settings, from environment variables, with defaults that work.

| variable | default | meaning |
|---|---|---|
| MNIST_MODEL | default | folder under MNIST_MODELS_DIR to serve |
| MNIST_MODELS_DIR | models | where exported models live |
| MNIST_DEVICE | auto | auto, cuda or cpu (ONNX Runtime execution provider) |
| MNIST_REQUIRE_GPU | 0 | 1: refuse to start when CUDA is not in use, instead of falling back to CPU |
| MNIST_ORT_THREADS | 1 | ONNX Runtime intra-op threads per call |
| MNIST_ORT_SPINNING | 0 | 1: let ONNX Runtime threads busy-wait |
| MNIST_BATCHING | 1 | 0: no adaptive batching (each request its own ONNX Runtime call), for comparison |
| MNIST_MAX_BATCH_SIZE | 1024 | most images in one ONNX Runtime call made by the adaptive batcher |
| MNIST_MAX_LATENCY_MS | 1000 | the batcher's end-to-end budget: past it a queued request gets 503 |
| MNIST_WORKERS | 1 | server processes, each with its own model session |
| MNIST_FAST_PATH | 1 | 0: serve /predict and /predict_bytes through BentoML's API layer too (see service/fastpath.py) |
| MNIST_TRACE_PREDICT | 0 | 1: keep OpenTelemetry on the predict routes (off by default: it cost 36% throughput) |
| MNIST_MAX_IMAGES | 1024 | most images in one request; more gets 400 naming the limit |
| MNIST_MAX_BODY_BYTES | 16777216 | largest request body; larger gets 413 |
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

from .runtime import RuntimeConfig, env_bool, env_int


@dataclass(frozen=True)
class Limits:
    max_images: int = 1024  # per request
    max_body_bytes: int = 16 * 1024 * 1024  # 1024 images as JSON take about 6 MB


@dataclass(frozen=True)
class Batching:
    enabled: bool = True  # off only to measure what batching buys
    # images per ONNX Runtime call; as large as the per-request limit, so a big request is never split
    # (split, 256-image requests ran at 38% of the unsplit throughput) and single images are unaffected;
    # see the tuning sweeps in docs/benchmarks.md
    max_batch_size: int = 1024
    max_latency_ms: int = 1000  # a budget, not a wait window: 50 ms gave 503 storms at 64 clients
    workers: int = 1


@dataclass(frozen=True)
class ServiceSettings:
    runtime: RuntimeConfig
    batching: Batching
    limits: Limits
    trace_predict: bool = False  # OpenTelemetry on the predict routes; off, it cost 36% of throughput
    fast_path: bool = True  # predict routes beside BentoML's API layer, through its batcher (service/fastpath.py)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServiceSettings:
        def number(name: str, default: int, minimum: int) -> int:
            return env_int(env, name, default, minimum)

        return cls(
            runtime=RuntimeConfig.from_env(env),
            batching=Batching(
                enabled=env_bool(env.get("MNIST_BATCHING"), Batching.enabled),
                max_batch_size=number("MNIST_MAX_BATCH_SIZE", Batching.max_batch_size, 2),
                max_latency_ms=number("MNIST_MAX_LATENCY_MS", Batching.max_latency_ms, 1),
                workers=number("MNIST_WORKERS", Batching.workers, 1),
            ),
            trace_predict=env_bool(env.get("MNIST_TRACE_PREDICT"), False),
            fast_path=env_bool(env.get("MNIST_FAST_PATH"), True),
            limits=Limits(
                max_images=number("MNIST_MAX_IMAGES", Limits.max_images, 1),
                max_body_bytes=number("MNIST_MAX_BODY_BYTES", Limits.max_body_bytes, 1024),
            ),
        )


@functools.cache
def settings() -> ServiceSettings:
    """The process's settings, read from the environment once, on first use."""
    return ServiceSettings.from_env()
