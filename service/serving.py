"""What the doors serve with: the settings, the model runtime, the predictor core and the batcher in front of it.

Built once per worker, from the settings it is given, when BentoML creates the service instance (the model is
loaded after the worker process starts), and handed to the doors through a `ServingSlot` they were built with.
Nothing here calls back into the BentoML service class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from .drain import Drain
from .fastpath import FastPredictor
from .predictor import Predictor
from .runtime import ACTIVATIONS, ModelRuntime
from .schemas import BatchingInfo, ModelInfo, PixelRequest
from .settings import ServiceSettings


@dataclass(frozen=True)
class Serving:
    settings: ServiceSettings
    runtime: ModelRuntime
    predictor: Predictor
    batcher: FastPredictor  # every door's way to the predictor: adaptive batching, or inline when it is off
    drain: Drain = dataclasses.field(default_factory=lambda: Drain(0))  # whether SIGTERM has made it not ready

    @classmethod
    def start(
        cls, settings: ServiceSettings, routes: Mapping[str, type[PixelRequest]], drain: Drain | None = None
    ) -> Serving:
        """Load and warm the model; `routes` are the JSON routes' request models (path -> model); `drain` the
        worker's SIGTERM drain, whose state the readiness answers report.

        Warmed up to the largest call the worker can make: the first call of a new size grows ONNX Runtime's
        memory arena (on the CPU the first two 1024-image calls took 15-17 ms, the next 11-12 ms; on a GPU the
        arena is device memory), and that should happen before the worker reports ready, not to a burst of
        traffic. It costs a worker's start about 30 ms on the CPU.
        """
        largest = max(settings.batching.max_batch_size, settings.limits.max_images)
        runtime = ModelRuntime(dataclasses.replace(settings.runtime, warmup_rows=largest))
        predictor = Predictor(runtime)
        batcher = FastPredictor(routes, predictor, settings.batching)
        return cls(settings, runtime, predictor, batcher, drain or Drain(settings.drain_s))

    def model_info(self) -> ModelInfo:
        """The body of GET /metadata: the served model, the execution provider in use, batching and limits."""
        meta, runtime = self.runtime.metadata, self.runtime
        batching, limits = self.settings.batching, self.settings.limits
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


class ServingSlot:
    """Where a worker's Serving is put once its model is loaded; empty before (the doors then hand requests
    on to BentoML, which answers as it does while starting)."""

    def __init__(self) -> None:
        self.serving: Serving | None = None
