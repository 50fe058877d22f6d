"""The predictor core: a batch of validated requests in, one response per request out, with one ONNX Runtime call.

Plain Python (no BentoML): the batcher (service/batching.py) calls `Predictor` for every door, batching on or
off, and the tests call it directly. Probabilities and labels are the heads' (service/heads.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .heads import Activation
from .runtime import ModelRuntime
from .schemas import Prediction, PredictResponse


@dataclass
class RequestBatch:
    """Several requests' rows stacked for one ONNX Runtime call."""

    pixels: np.ndarray  # (N, 784) float32, the requests' rows in order
    sizes: list[int]  # rows per request
    activations: list[Activation | None]  # per request; None: the model's head


@dataclass
class ResponseBatch:
    """One response per request of a RequestBatch, in the same order."""

    responses: list[PredictResponse]
    infer_seconds: float = 0.0  # the batch's time in the ONNX Runtime call (Triton's compute_infer: service/stats.py)


class Predictor:
    """Turns a RequestBatch into a ResponseBatch; each request keeps its own rows and activation."""

    def __init__(self, runtime: ModelRuntime) -> None:
        self.runtime = runtime
        self.labels = runtime.metadata.labels

    def respond(self, pixels: np.ndarray, activation: Activation | None) -> PredictResponse:
        """One request on its own, without the batcher (the OpenAPI page's methods, the tests)."""
        return self.predict_batch(RequestBatch(pixels, [len(pixels)], [activation])).responses[0]

    def predict_batch(self, batch: RequestBatch) -> ResponseBatch:
        """One ONNX Runtime call for every request in the batch, each activation applied once to the whole
        batch, then each request's rows with its own activation (per-request activations and slices took a
        16-request batch 439 us, this 300 us, ONNX Runtime included)."""
        if sum(batch.sizes) != len(batch.pixels) or len(batch.sizes) != len(batch.activations):
            raise ValueError(f"batch of {len(batch.pixels)} rows does not match sizes {batch.sizes}")
        started = time.perf_counter()
        logits = self.runtime.logits(batch.pixels)
        infer_seconds = time.perf_counter() - started
        chosen = [activation or self.runtime.default_activation for activation in batch.activations]
        rows = {}  # activation -> the batch's (label, probabilities) rows as Python objects
        for activation in set(chosen):
            result = self.runtime.probabilities(logits, activation)
            labels = [self.labels[i] for i in result.label_indices.tolist()]
            rows[activation] = list(zip(labels, result.probabilities.tolist(), strict=True))
        meta = self.runtime.metadata
        responses, start = [], 0
        for size, activation in zip(batch.sizes, chosen, strict=True):
            predictions = [
                Prediction.model_construct(label=label, probabilities=p)
                for label, p in rows[activation][start : start + size]
            ]
            responses.append(
                PredictResponse.model_construct(
                    model=meta.name, version=meta.version, activation=activation, predictions=predictions
                )
            )
            start += size
        return ResponseBatch(responses, infer_seconds)
