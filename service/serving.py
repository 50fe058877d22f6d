"""A worker's serving parts, and the one seam through which the front finds them.

`Serving` holds the settings, the model runtime, the predictor and the batcher in front of it, and the worker's
drain. It is built once per worker, when BentoML creates the service instance (the model is loaded after the
worker process starts: service/app.py's `__init__`), and put in the `ServingSlot` that the front
(service/front.py) was built with, when the app was. That slot is the seam: the front never reaches into
BentoML's service instance, and nothing here calls back into the BentoML service class.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .batching import Batcher
from .drain import Drain
from .predictor import Predictor
from .runtime import ModelRuntime
from .settings import ServiceSettings


@dataclass(frozen=True)
class Serving:
    settings: ServiceSettings
    runtime: ModelRuntime
    predictor: Predictor
    batcher: Batcher  # every door's way to the predictor: admission, adaptive batching (inline when it is off)
    drain: Drain = dataclasses.field(default_factory=lambda: Drain(0))  # whether SIGTERM has made it not ready

    @classmethod
    def start(cls, settings: ServiceSettings, drain: Drain | None = None) -> Serving:
        """Load and warm the model; `drain` is the worker's SIGTERM drain, whose state the readiness answers
        report.

        Warmed up to the largest call the worker can make: the first call of a new size grows ONNX Runtime's
        memory arena (on the CPU the first two 1024-image calls took 15-17 ms, the next 11-12 ms; on a GPU the
        arena is device memory), and that should happen before the worker reports ready, not to a burst of
        traffic. It costs a worker's start about 30 ms on the CPU.
        """
        largest = max(settings.batching.max_batch_size, settings.limits.max_images)
        runtime = ModelRuntime(dataclasses.replace(settings.runtime, warmup_rows=largest))
        predictor = Predictor(runtime)
        batcher = Batcher(predictor, settings.batching)
        return cls(settings, runtime, predictor, batcher, drain or Drain(settings.drain_s))


class ServingSlot:
    """Where a worker's Serving is put once its model is loaded; empty before (the front then hands requests
    on to BentoML, which answers as it does while starting)."""

    def __init__(self) -> None:
        self.serving: Serving | None = None
