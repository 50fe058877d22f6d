"""The BentoML service: the `@bentoml.service` class, its start-up check and its middlewares, in their order.

    bentoml serve service.app:MNISTService --port 3000            # models/default
    MNIST_MODEL=pigeon bentoml serve service.app:MNISTService     # the binary model

Endpoints (README, "The HTTP API"; the OpenAPI page at / has working examples):
    POST /predict        {"images": [[784 floats in 0..1], ...], "activation": null|"softmax"|"sigmoid"}
    POST /predict_bytes  {"data": base64 of raw uint8/float32 N x 784 or of a .npy file, "format", "dtype", ...}
    POST /predict_image  multipart upload "image" (PNG/JPEG, any size or colour) [+ "activation"]
    GET|POST /metadata   the served model: name, version, head, labels, accuracy, execution provider, batching
    /v2/...              the Open Inference Protocol, with Triton's configuration and statistics extensions
BentoML adds GET /livez, /readyz (after the model is loaded and warmed up; 503 again once SIGTERM starts the
drain, service/drain.py) and /metrics.

Every route above is answered by the front (service/front.py), in front of BentoML's app. The `@bentoml.api`
methods below are here for the OpenAPI page at / and /docs.json, which BentoML writes from their signatures;
they serve no request once the worker's model is loaded.

The one module that acts when imported: BentoML fixes a service's workers when its class is defined, and
`bentoml serve` imports this module to find it, so `MNISTService` is built here, from the environment's
settings, with BentoML's fixes installed (service/bentoml_internals.py). `build_service(settings)` builds the
same service from any settings (the tests build several in one process).
"""

# No `from __future__ import annotations`: BentoML reads the API methods' annotations, which name local classes.

import dataclasses
import gc
from pathlib import Path
from typing import Annotated

import bentoml
from bentoml.validators import ContentType
from starlette.middleware.cors import CORSMiddleware

from . import bentoml_internals, documents
from .codecs.npy import PredictBytesRequest
from .codecs.rows import PredictRequest
from .codecs.upload import upload_pixels
from .drain import Drain
from .errors import ModelLoadError
from .front import PREDICT_PATHS, Front
from .gcpauses import watch_gc_pauses
from .heads import Activation
from .logs import configure_logging
from .metrics import model_info_gauge
from .runtime import ModelRuntime
from .schemas import ModelInfo, PredictResponse
from .serving import Serving, ServingSlot
from .settings import ServiceSettings


def settings_or_exit() -> ServiceSettings:
    """The environment's settings; a bad one ends `bentoml serve` with one line naming the variable."""
    try:
        return ServiceSettings.from_env()
    except ValueError as exc:
        raise SystemExit(f"mnist-serve: cannot serve: {exc}") from None


def build_service(settings: ServiceSettings):  # noqa: ANN201 - a bentoml.Service
    """The BentoML service over `settings`: its class (start-up check, worker set-up, the OpenAPI page's
    methods), then its middlewares (`add_middlewares`).

    Longer than a function should be because it is mostly one class definition: BentoML fixes a service's workers
    and tracing when the class is decorated, and the methods close over this build's `settings`, `slot` and
    `drain`, so the class is written here, whole, where it reads as BentoML's own examples do."""
    bentoml_internals.install()
    limits = settings.limits
    json_request = PredictRequest.limited_to(limits.max_images)
    bytes_request = PredictBytesRequest.limited_to(limits.max_images)
    slot = ServingSlot()
    drain = Drain(settings.drain_s)  # each worker process has its own copy, and its own SIGTERM

    @bentoml.service(
        name="mnist",
        workers=settings.batching.workers,
        traffic={"timeout": 30},
        logging={"access": {"enabled": False}},  # a log line per request: 10-35% of throughput (issue 3)
        # OpenTelemetry's middleware cost 36% of throughput on the predict routes even with sampling off (the
        # default), so they are excluded; MNIST_TRACE_PREDICT=1 keeps them traced for operators who sample.
        tracing={"excluded_urls": [] if settings.trace_predict else list(PREDICT_PATHS)},
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
            """A worker's set-up, in its process: logs, the model (loaded, warmed), the front's slot, the drain."""
            configure_logging(settings.log_format)
            self.serving = Serving.start(settings, drain)
            slot.serving = self.serving
            meta, provider = self.serving.runtime.metadata, self.serving.runtime.provider
            model_info_gauge().labels(model=meta.name, version=meta.version, provider=provider).set(1)
            drain.install()
            # Startup leaves ~100k long-lived objects (BentoML, pydantic, ORT); freezing them keeps full garbage
            # collections from walking them mid-request: p99 at 64 users fell from ~160 ms to ~120 ms.
            gc.collect()
            gc.freeze()
            watch_gc_pauses()

        async def __is_ready__(self) -> bool:
            """BentoML's /readyz hook: not ready once SIGTERM has started the drain."""
            return not drain.draining

        # The OpenAPI page's methods: the front answers these routes; BentoML documents them from these signatures.

        @bentoml.api
        def predict(self, request: json_request, /) -> PredictResponse:  # type: ignore[valid-type]
            """Classify images sent as JSON rows of 784 pixels in [0, 1] (28x28 row-major, white on black)."""
            return self.serving.predictor.respond(request.pixels, request.activation)

        @bentoml.api
        def predict_bytes(self, request: bytes_request, /) -> PredictResponse:  # type: ignore[valid-type]
            """Classify images sent compactly: base64 of raw uint8 (or float32) N x 784 bytes, or of a .npy file."""
            return self.serving.predictor.respond(request.pixels, request.activation)

        @bentoml.api
        def predict_image(
            self,
            image: Annotated[Path, ContentType("image/*")],
            activation: Activation | None = None,
        ) -> PredictResponse:
            """Classify an uploaded picture of one digit: any size or colour, dark-on-light or light-on-dark.

            It is turned into MNIST's convention (white digit on black, fit in 20x20, centred by mass in 28x28).
            """
            return self.serving.predictor.respond(upload_pixels(Path(image).read_bytes()), activation)

        @bentoml.api
        def metadata(self) -> ModelInfo:
            """The served model, the execution provider in use and the batching settings."""
            return documents.model_info(self.serving.runtime, settings)

    add_middlewares(MNISTService, settings, slot, drain)
    return MNISTService


def add_middlewares(service, settings: ServiceSettings, slot: ServingSlot, drain: Drain) -> None:  # noqa: ANN001
    """The service's middlewares, outermost first (BentoML keeps the order added, inside its own: metrics, the
    timeout fix, tracing): CORS when origins are set, so the front's answers carry its headers; then the front."""
    if settings.cors_origins:
        service.add_asgi_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["retry-after", "inference-header-content-length"],
        )
    service.add_asgi_middleware(Front, slot=slot, limits=settings.limits, api_token=settings.api_token, drain=drain)


MNISTService = build_service(settings_or_exit())
