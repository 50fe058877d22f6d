"""The BentoML service: HTTP endpoints over the model runtime, with adaptive batching.

    bentoml serve service.service:MNISTService --port 3000            # models/default
    MNIST_MODEL=pigeon bentoml serve service.service:MNISTService     # the binary model

Endpoints (POST, JSON unless noted; the OpenAPI page at / has working examples):
    /predict        {"images": [[784 floats in 0..1], ...], "activation": null|"softmax"|"sigmoid"}
    /predict_bytes  {"data": base64 of raw uint8/float32 N x 784 or of a .npy file, "format", "dtype", ...}
    /predict_image  multipart upload "image" (PNG/JPEG, any size or colour) [+ "activation"]
    /metadata       the served model: name, version, head, labels, accuracy, execution provider, batching
BentoML adds GET /livez, /readyz (after the model is loaded and warmed up; 503 again once SIGTERM starts the
drain, service/drain.py) and /metrics.

The one module that acts when imported: BentoML fixes a service's workers and batching when its class is
defined, and `bentoml serve` imports this module to find it, so `MNISTService` is built here, from the
environment's settings, with BentoML's fixes installed (service/compat.py). `build_service(settings)` builds
the same service from any settings (the tests build several in one process).
"""

# No `from __future__ import annotations`: BentoML reads the API methods' annotations, which name local classes.

import dataclasses
import functools
import gc
import logging
from pathlib import Path
from typing import Annotated

import bentoml
from bentoml.validators import ContentType
from starlette.middleware.cors import CORSMiddleware

from . import compat
from .doors import Doors, classify_upload
from .drain import Drain
from .gcpauses import watch_gc_pauses
from .guard import RequestGuard
from .logs import configure_logging
from .predictor import RequestBatch, ResponseBatch
from .runtime import Activation, ModelLoadError, ModelRuntime
from .schemas import ModelInfo, PixelRequest, PredictBytesRequest, PredictRequest, PredictResponse
from .serving import Serving, ServingSlot
from .settings import ServiceSettings

log = logging.getLogger("service")

API_NAMES = ("predict", "predict_bytes", "predict_image", "metadata")
JSON_ROUTES = ("/predict", "/predict_bytes", "/metadata")
UPLOAD_ROUTES = ("/predict_image",)
PREDICT_ROUTES = ("/predict", "/predict_bytes", "/predict_image")


def settings_or_exit() -> ServiceSettings:
    """The environment's settings; a bad one ends `bentoml serve` with one line naming the variable."""
    try:
        return ServiceSettings.from_env()
    except ValueError as exc:
        raise SystemExit(f"mnist-serve: cannot serve: {exc}") from None


@functools.cache
def model_info_gauge():  # noqa: ANN201 - a prometheus_client Gauge
    """One per process (Prometheus refuses a second metric of the same name)."""
    return bentoml.metrics.Gauge(
        name="mnist_model_info",
        documentation="The served model and the ONNX Runtime execution provider actually in use (value 1)",
        labelnames=["model", "version", "provider"],
    )


def build_service(settings: ServiceSettings):  # noqa: ANN201, C901 - a bentoml.Service; one class definition
    """The BentoML service over `settings`: its API methods, start-up check and middlewares (guard, doors)."""
    compat.install()
    batching, limits = settings.batching, settings.limits
    batched = {
        "batchable": batching.enabled,
        "max_batch_size": batching.max_batch_size,
        "max_latency_ms": batching.max_latency_ms,
    }
    json_request = PredictRequest.limited_to(limits.max_images)
    bytes_request = PredictBytesRequest.limited_to(limits.max_images)
    slot = ServingSlot()
    drain = Drain(settings.drain_s)  # each worker process has its own copy, and its own SIGTERM

    @bentoml.service(
        name="mnist",
        workers=batching.workers,
        traffic={"timeout": 30},
        logging={"access": {"enabled": False}},  # a log line per request: 10-35% of throughput (issue 3)
        # OpenTelemetry's middleware cost 36% of throughput on the predict routes even with sampling off (the
        # default), so they are excluded; MNIST_TRACE_PREDICT=1 keeps them traced for operators who sample.
        tracing={"excluded_urls": [] if settings.trace_predict else list(PREDICT_ROUTES)},
    )
    class MNISTService:
        """MNIST digit classification: a multilayer perceptron in ONNX Runtime with adaptive batching.

        Send 28x28 pictures as JSON rows of 784 pixels in [0, 1] (`/predict`), as base64 bytes or a .npy file
        (`/predict_bytes`), or as an uploaded picture of any size (`/predict_image`); get a label and softmax
        or sigmoid probabilities per image. `GET /metadata` describes the served model; the Open Inference
        Protocol (v2) is served under `/v2`. Refusals are `{"error", "field"}` with a 4xx status.
        """

        @bentoml.on_deployment
        def verify_model() -> None:
            """Runs once in `bentoml serve`'s own process before any worker starts. A model that cannot be
            served (missing, corrupt, mismatched, CUDA required but absent) ends the command within seconds,
            exit status 1 and one line saying why, instead of BentoML restarting the worker forever."""
            try:
                ModelRuntime(dataclasses.replace(settings.runtime, warmup_rows=1))
            except (ModelLoadError, ValueError) as exc:
                raise SystemExit(f"mnist-serve: cannot serve: {exc}") from None

        def __init__(self) -> None:
            configure_logging(settings.log_format)
            routes = {"/predict": json_request, "/predict_bytes": bytes_request}
            self.serving = Serving.start(settings, routes, drain)
            slot.serving = self.serving
            meta, provider = self.serving.runtime.metadata, self.serving.runtime.provider
            model_info_gauge().labels(model=meta.name, version=meta.version, provider=provider).set(1)
            compat.bind_api_methods(self, API_NAMES)
            drain.install()
            # Startup leaves ~100k long-lived objects (BentoML, pydantic, ORT); freezing them keeps full garbage
            # collections from walking them mid-request: p99 at 64 users fell from ~160 ms to ~120 ms.
            gc.collect()
            gc.freeze()
            watch_gc_pauses()

        async def __is_ready__(self) -> bool:
            """BentoML's /readyz hook: not ready once SIGTERM has started the drain."""
            return not drain.draining

        # async: ORT's call is short (~15 us per image), so it runs on the event loop without a thread hop.
        @bentoml.api(**batched)
        async def predict(self, request: json_request, /) -> PredictResponse:  # type: ignore[valid-type]
            """Classify images sent as JSON rows of 784 pixels in [0, 1] (28x28 row-major, white on black)."""
            return self._predict(request)

        @bentoml.api(**batched)
        async def predict_bytes(self, request: bytes_request, /) -> PredictResponse:  # type: ignore[valid-type]
            """Classify images sent compactly: base64 of raw uint8 (or float32) N x 784 bytes, or of a .npy file."""
            return self._predict(request)

        def _predict(self, batch: RequestBatch | PixelRequest) -> ResponseBatch | PredictResponse:
            """With batching on, BentoML hands over a RequestBatch of several requests; off, a single request."""
            if isinstance(batch, PixelRequest):
                return self.serving.predictor.respond(batch.pixels, batch.activation)
            return self.serving.predictor.predict_batch(batch)

        @bentoml.api
        def predict_image(
            self,
            image: Annotated[Path, ContentType("image/*")],
            activation: Activation | None = None,
        ) -> PredictResponse:
            """Classify an uploaded picture of one digit: any size or colour, dark-on-light or light-on-dark.

            It is turned into MNIST's convention (white digit on black, fit in 20x20, centred by mass in 28x28).
            """
            # service/doors.py answers this route (and refuses what BentoML's multipart handling let through);
            # this signature is what BentoML's OpenAPI page shows for it.
            return classify_upload(self.serving.predictor, Path(image).read_bytes(), activation)

        @bentoml.api
        def metadata(self) -> ModelInfo:
            """The served model, the execution provider in use and the batching settings."""
            return self.serving.model_info()

    if settings.cors_origins:  # outermost of the service's middlewares, so the doors' answers carry CORS headers
        MNISTService.add_asgi_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["retry-after", "inference-header-content-length"],
        )
    MNISTService.add_asgi_middleware(  # BentoML keeps the order added: the guard outside the doors
        RequestGuard,
        max_body_bytes=limits.max_body_bytes,
        json_routes=JSON_ROUTES,
        upload_routes=UPLOAD_ROUTES,
        max_headers=limits.max_headers,
        max_header_bytes=limits.max_header_bytes,
        body_timeout_s=limits.body_timeout_s,
        api_token=settings.api_token,
        drain=drain,
    )
    MNISTService.add_asgi_middleware(Doors, slot=slot, fast_path=settings.fast_path)
    return MNISTService


MNISTService = build_service(settings_or_exit())
