"""The service's settings, from environment variables, with defaults that work. The one module that reads the
environment: the runtime, the front and the batcher get the typed settings it builds. A variable that was
removed ends the start with one line saying what replaced it (`REMOVED`).

| variable | default | meaning |
|---|---|---|
| MNIST_MODEL | default | folder under MNIST_MODELS_DIR to serve |
| MNIST_MODELS_DIR | models | where exported models live |
| MNIST_DEVICE | auto | auto, cuda or cpu (ONNX Runtime execution provider) |
| MNIST_REQUIRE_GPU | 0 | 1: refuse to start when CUDA is not in use, instead of falling back to CPU |
| MNIST_ORT_THREADS | 1 | ONNX Runtime intra-op threads per call |
| MNIST_ORT_SPINNING | 0 | 1: let ONNX Runtime threads busy-wait |
| MNIST_CUDA_TF32 | 0 | 1: TF32 matrix products on the GPU (faster; answers differ from the CPU's by ~1e-3) |
| MNIST_BATCHING | 1 | 0: no adaptive batching (each request its own ONNX Runtime call), for comparison |
| MNIST_MAX_BATCH_SIZE | 1024 | most images in one ONNX Runtime call made by the adaptive batcher |
| MNIST_MAX_LATENCY_MS | 1000 | the batcher's end-to-end budget: past it a queued request gets 503 |
| MNIST_MAX_QUEUE | 512 | requests waiting for the batcher; past it a new one gets 503 + Retry-After at once |
| MNIST_WORKERS | 1 | server processes, each with its own model session |
| MNIST_TRACE_PREDICT | 0 | 1: keep OpenTelemetry on the predict routes (off by default: it cost 36% throughput) |
| MNIST_MAX_IMAGES | 1024 | most images in one request; more gets 400 naming the limit |
| MNIST_MAX_BODY_BYTES | 16777216 | largest request body; larger gets 413 |
| MNIST_MAX_HEADERS | 100 | most request headers; more gets 431 |
| MNIST_MAX_HEADER_BYTES | 16384 | largest total size of the request headers; larger gets 431 |
| MNIST_BODY_TIMEOUT_S | 30 | seconds for a request body to arrive; slower gets 408 |
| MNIST_API_TOKEN | (unset) | when set, predict and metadata routes need `Authorization: Bearer <token>` (else 401) |
| MNIST_LOG_FORMAT | text | json: one JSON object per log line |
| MNIST_CORS_ORIGINS | (unset) | comma-separated origins allowed to call from a browser (`*` for any) |
| MNIST_DRAIN_S | 5 | on SIGTERM: seconds of not-ready serving (with `Connection: close`) before the worker stops |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .runtime import RuntimeConfig

LOG_FORMATS = ("text", "json")
# Removed variables -> what replaced them; setting one is an error at start, not silently ignored.
REMOVED = {
    "MNIST_FAST_PATH": "every route now takes the one request path (service/front.py, then the batcher); "
    "BentoML's API layer no longer serves /predict or /predict_bytes. Unset it",
}


def env_bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    """An integer setting from the environment; a bad value is an error naming the variable."""
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}: got {raw!r}; allowed: an integer >= {minimum}") from None
    if value < minimum:
        raise ValueError(f"{name}: got {value}; allowed: an integer >= {minimum}")
    return value


def runtime_config(env: Mapping[str, str]) -> RuntimeConfig:
    """MNIST_MODELS_DIR, MNIST_MODEL, MNIST_DEVICE, MNIST_REQUIRE_GPU, MNIST_ORT_THREADS, MNIST_ORT_SPINNING,
    MNIST_CUDA_TF32."""
    defaults = RuntimeConfig
    return RuntimeConfig(
        models_dir=env.get("MNIST_MODELS_DIR") or defaults.models_dir,
        model=env.get("MNIST_MODEL") or defaults.model,
        device=env.get("MNIST_DEVICE") or defaults.device,
        require_gpu=env_bool(env.get("MNIST_REQUIRE_GPU"), defaults.require_gpu),
        intra_op_threads=env_int(env, "MNIST_ORT_THREADS", defaults.intra_op_threads, 0),
        spinning=env_bool(env.get("MNIST_ORT_SPINNING"), defaults.spinning),
        cuda_tf32=env_bool(env.get("MNIST_CUDA_TF32"), defaults.cuda_tf32),
    )


@dataclass(frozen=True)
class Limits:
    max_images: int = 1024  # per request
    max_body_bytes: int = 16 * 1024 * 1024  # 1024 images as JSON take about 6 MB
    max_headers: int = 100  # as nginx and Node allow; a browser sends ~15
    max_header_bytes: int = 16 * 1024  # Node's default
    body_timeout_s: int = 30  # as the request timeout: a body that slow has no answer to wait for


@dataclass(frozen=True)
class Batching:
    enabled: bool = True  # off only to measure what batching buys
    # images per ONNX Runtime call; as large as the per-request limit, so a request is never split to fit a
    # call on its own (requests waiting together whose sizes do not fill it still are: the batcher splits the
    # one that overflows). Split, 256-image requests ran at 38% of the unsplit throughput; single images are
    # unaffected; see the tuning sweeps in docs/benchmarks.md
    max_batch_size: int = 1024
    max_latency_ms: int = 1000  # a budget, not a wait window: 50 ms gave 503 storms at 64 clients
    # Requests admitted to the batcher; one more gets 503 + Retry-After at once. 512 is ~0.25 s of queue at one
    # core's ~2,000 one-image requests/s: it bounds a served request's wait on a bad day, while a good day's
    # bursts and the shared machine's stalls fit in it. 128 shed 4.7% of an open loop at half capacity in
    # `loadtests.compare` (2026-11-23 08:51) and 12,920 of 45,000 requests at 1,500/s, where 512 shed none
    # (one run each, docs/benchmarks.md).
    max_queue: int = 512
    workers: int = 1


@dataclass(frozen=True)
class ServiceSettings:
    runtime: RuntimeConfig
    batching: Batching
    limits: Limits
    trace_predict: bool = False  # OpenTelemetry on the predict routes; off, it cost 36% of throughput
    api_token: str = ""  # empty: no authentication (put the service behind a gateway that does it)
    log_format: str = "text"  # or "json"
    # Browser origins allowed (CORS). Not BentoML's http.cors: BentoML adds its CORS middleware inside the
    # service's own, so the front's answers would go out without CORS headers.
    cors_origins: tuple[str, ...] = ()
    # Seconds a worker keeps serving after SIGTERM, not ready, before it stops: long enough for a balancer's
    # health checks (HAProxy every 0.5 s, Kubernetes' endpoint updates in a few seconds) to stop sending to it.
    drain_s: int = 5

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"MNIST_LOG_FORMAT: got {self.log_format!r}; allowed: {', '.join(LOG_FORMATS)}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServiceSettings:
        for name, replacement in REMOVED.items():
            if env.get(name):
                raise ValueError(f"{name} was removed: {replacement}")

        def number(name: str, default: int, minimum: int) -> int:
            return env_int(env, name, default, minimum)

        return cls(
            runtime=runtime_config(env),
            batching=Batching(
                enabled=env_bool(env.get("MNIST_BATCHING"), Batching.enabled),
                max_batch_size=number("MNIST_MAX_BATCH_SIZE", Batching.max_batch_size, 2),
                max_latency_ms=number("MNIST_MAX_LATENCY_MS", Batching.max_latency_ms, 1),
                workers=number("MNIST_WORKERS", Batching.workers, 1),
                max_queue=number("MNIST_MAX_QUEUE", Batching.max_queue, 1),
            ),
            trace_predict=env_bool(env.get("MNIST_TRACE_PREDICT"), False),
            limits=Limits(
                max_images=number("MNIST_MAX_IMAGES", Limits.max_images, 1),
                max_body_bytes=number("MNIST_MAX_BODY_BYTES", Limits.max_body_bytes, 1024),
                max_headers=number("MNIST_MAX_HEADERS", Limits.max_headers, 10),
                max_header_bytes=number("MNIST_MAX_HEADER_BYTES", Limits.max_header_bytes, 1024),
                body_timeout_s=number("MNIST_BODY_TIMEOUT_S", Limits.body_timeout_s, 1),
            ),
            api_token=env.get("MNIST_API_TOKEN", ""),
            log_format=(env.get("MNIST_LOG_FORMAT") or "text").strip().lower(),
            cors_origins=tuple(o.strip() for o in env.get("MNIST_CORS_ORIGINS", "").split(",") if o.strip()),
            drain_s=number("MNIST_DRAIN_S", cls.drain_s, 0),
        )
