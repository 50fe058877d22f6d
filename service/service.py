"""The BentoML service: HTTP endpoints over the model runtime, with adaptive batching.

    bentoml serve service.service:MNISTService --port 3000            # models/default
    MNIST_MODEL=pigeon bentoml serve service.service:MNISTService     # the binary model

Endpoints (POST, JSON unless noted; the OpenAPI page at / has working examples):
    /predict        {"images": [[784 floats in 0..1], ...], "activation": null|"softmax"|"sigmoid"}
    /predict_bytes  {"data": base64 of raw uint8/float32 N x 784 or of a .npy file, "format", "dtype", ...}
    /predict_image  multipart upload "image" (PNG/JPEG, any size or colour) [+ "activation"]
    /metadata       the served model: name, version, head, labels, accuracy, execution provider, batching
BentoML adds GET /livez, /readyz (after the model is loaded and warmed up) and /metrics.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
from pathlib import Path
from typing import Annotated

import bentoml
from bentoml.validators import ContentType
from starlette.middleware.cors import CORSMiddleware

from . import compat
from .batching import register_containers
from .doors import Doors, classify_upload
from .fastpath import FastPredictor
from .guard import RequestGuard
from .logs import configure_logging
from .predictor import Predictor, RequestBatch, ResponseBatch
from .runtime import ACTIVATIONS, Activation, ModelLoadError, ModelRuntime
from .schemas import BatchingInfo, ModelInfo, PixelRequest, PredictBytesRequest, PredictRequest, PredictResponse
from .settings import ServiceSettings, settings

log = logging.getLogger("service")


def settings_or_exit() -> ServiceSettings:
    """The settings; a bad one ends `bentoml serve` with one line naming the variable, not a traceback."""
    try:
        return settings()
    except ValueError as exc:
        raise SystemExit(f"mnist-serve: cannot serve: {exc}") from None


# BentoML fixes batching and worker settings when the class is defined, so they are read here.
SETTINGS = settings_or_exit()
BATCHING = SETTINGS.batching
BATCHED = {
    "batchable": BATCHING.enabled,
    "max_batch_size": BATCHING.max_batch_size,
    "max_latency_ms": BATCHING.max_latency_ms,
}
API_NAMES = ("predict", "predict_bytes", "predict_image", "metadata")
JSON_ROUTES = ("/predict", "/predict_bytes", "/metadata")
PREDICT_MODELS = {"/predict": PredictRequest, "/predict_bytes": PredictBytesRequest}
UPLOAD_ROUTES = ("/predict_image",)


@bentoml.service(
    name="mnist",
    workers=BATCHING.workers,
    traffic={"timeout": 30},
    logging={"access": {"enabled": False}},  # a log line per request: 10-35% of throughput (measured in issue 3)
    # OpenTelemetry's middleware cost 36% of throughput on the predict routes even with sampling off (the
    # default), so they are excluded; MNIST_TRACE_PREDICT=1 keeps them traced for operators who sample.
    tracing={"excluded_urls": [] if SETTINGS.trace_predict else ["/predict", "/predict_bytes", "/predict_image"]},
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
        """Runs once in `bentoml serve`'s own process before any worker starts. A model that cannot be served
        (missing, corrupt, mismatched, CUDA required but absent) or a bad setting ends the command within
        seconds, exit status 1 and one line saying why, instead of BentoML restarting the worker forever."""
        try:
            ModelRuntime(dataclasses.replace(SETTINGS.runtime, warmup_rows=1))
        except (ModelLoadError, ValueError) as exc:
            raise SystemExit(f"mnist-serve: cannot serve: {exc}") from None

    def __init__(self) -> None:
        register_containers()
        self.settings = SETTINGS
        configure_logging(self.settings.log_format)
        self.runtime = ModelRuntime(self.settings.runtime)
        meta = self.runtime.metadata
        bentoml.metrics.Gauge(
            name="mnist_model_info",
            documentation="The served model and the ONNX Runtime execution provider actually in use (value 1)",
            labelnames=["model", "version", "provider"],
        ).labels(model=meta.name, version=meta.version, provider=self.runtime.provider).set(1)
        self.predictor = Predictor(self.runtime)
        self.fast_predictor = (
            FastPredictor(PREDICT_MODELS, self.predictor, BATCHING) if self.settings.fast_path else None
        )
        # BentoML looks the API method up on the instance for every request, and its descriptor rebuilds
        # inspect.signature each time (11% of the worker's CPU under load). An instance attribute shadows
        # the descriptor, so bind each API once here.
        for name in API_NAMES:
            setattr(self, name, getattr(self, name))
        # Startup leaves ~100k long-lived objects (BentoML, pydantic, ORT); freezing them keeps full garbage
        # collections from walking them mid-request: p99 at 64 users fell from ~160 ms to ~120 ms.
        gc.collect()
        gc.freeze()

    # async: ORT's call is short (~15 us per image), so it runs on the event loop without a thread hop.
    @bentoml.api(**BATCHED)
    async def predict(self, request: PredictRequest, /) -> PredictResponse:
        """Classify images sent as JSON rows of 784 pixels in [0, 1] (28x28 row-major, white on black)."""
        return self._predict(request)

    @bentoml.api(**BATCHED)
    async def predict_bytes(self, request: PredictBytesRequest, /) -> PredictResponse:
        """Classify images sent compactly: base64 of raw uint8 (or float32) N x 784 bytes, or of a .npy file."""
        return self._predict(request)

    def _predict(self, batch: RequestBatch | PixelRequest) -> ResponseBatch | PredictResponse:
        """With batching on, BentoML hands over a RequestBatch of several requests; off, a single request."""
        if isinstance(batch, PixelRequest):
            return self.predictor.respond(batch.pixels, batch.activation)
        return self.predictor.predict_batch(batch)

    @bentoml.api
    def predict_image(
        self,
        image: Annotated[Path, ContentType("image/*")],
        activation: Activation | None = None,
    ) -> PredictResponse:
        """Classify an uploaded picture of one digit: any size or colour, dark-on-light or light-on-dark.

        It is turned into MNIST's convention (white digit on black, fit in 20x20, centred by mass in 28x28).
        """
        # service/doors.py answers this route (and refuses what BentoML's multipart handling let through); this
        # signature is what BentoML's OpenAPI page shows for it.
        return classify_upload(self.predictor, Path(image).read_bytes(), activation)

    @bentoml.api
    def metadata(self) -> ModelInfo:
        """The served model, the execution provider in use and the batching settings."""
        meta, runtime = self.runtime.metadata, self.runtime
        return ModelInfo(
            name=meta.name,
            version=meta.version,
            head=meta.head,
            labels=meta.labels,
            activations=list(ACTIVATIONS),
            input=meta.input.model_dump(),
            output=meta.output.model_dump(),
            test_accuracy=meta.metrics.get("test_accuracy"),
            metrics=meta.metrics,
            execution_provider=runtime.provider,
            batching=BatchingInfo(
                enabled=BATCHING.enabled,
                max_batch_size=BATCHING.max_batch_size,
                max_latency_ms=BATCHING.max_latency_ms,
                workers=BATCHING.workers,
                ort_intra_op_threads=runtime.config.intra_op_threads,
            ),
            limits={
                "max_images_per_request": self.settings.limits.max_images,
                "max_body_bytes": self.settings.limits.max_body_bytes,
                "max_queued_requests": BATCHING.max_queue,
            },
            startup_seconds=round(runtime.startup_seconds, 3),
        )


compat.install()
LIMITS = SETTINGS.limits
if SETTINGS.cors_origins:  # outermost of the service's middlewares, so the doors' answers carry CORS headers too
    MNISTService.add_asgi_middleware(
        CORSMiddleware,
        allow_origins=list(SETTINGS.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["*"],
        expose_headers=["retry-after", "inference-header-content-length"],
    )
MNISTService.add_asgi_middleware(  # BentoML keeps the order added: the guard outside the doors
    RequestGuard,
    max_body_bytes=LIMITS.max_body_bytes,
    json_routes=JSON_ROUTES,
    upload_routes=UPLOAD_ROUTES,
    max_headers=LIMITS.max_headers,
    max_header_bytes=LIMITS.max_header_bytes,
    body_timeout_s=LIMITS.body_timeout_s,
    api_token=SETTINGS.api_token,
)
MNISTService.add_asgi_middleware(Doors, fast_path=SETTINGS.fast_path)
