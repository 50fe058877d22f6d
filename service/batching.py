"""Teach BentoML's adaptive batcher to batch whole requests, not bare arrays.

BentoML batches a batchable API's single argument with a "data container" chosen by its type; the built-in
ones cover arrays, tensors, DataFrames and lists. Our argument is a validated request (pixels plus the
caller's choice of activation), and our answer carries the model's name and version, so we register a
container pair for them. Counting is in images: `max_batch_size` caps the rows of one ONNX Runtime call, and
the batcher splits a request that would overflow it (`slice_rows`) and merges the answers
(`ResponseContainer.batches_to_batch`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from bentoml._internal.runner.container import DataContainer, DataContainerRegistry

from .predictor import RequestBatch, ResponseBatch
from .schemas import PixelRequest, PredictResponse


class InProcessContainer(DataContainer):
    """Our batches never cross a process boundary (no runner), so they have no wire format."""

    @classmethod
    def to_payload(cls, batch, batch_dim: int):  # noqa: ANN001, ANN206
        raise NotImplementedError(f"{cls.__name__} batches in-process only")

    @classmethod
    def from_payload(cls, payload):  # noqa: ANN001, ANN206
        raise NotImplementedError(f"{cls.__name__} batches in-process only")


class RequestContainer(InProcessContainer, DataContainer[PixelRequest, RequestBatch]):
    @classmethod
    def batches_to_batch(cls, batches: Sequence[PixelRequest], batch_dim: int = 0) -> tuple[RequestBatch, list[int]]:
        pixels = batches[0].pixels if len(batches) == 1 else np.concatenate([r.pixels for r in batches])
        batch = RequestBatch(pixels, [r.rows for r in batches], [r.activation for r in batches])
        return batch, list(range(len(batches) + 1))  # output boundaries: one response per request

    @classmethod
    def batch_to_batches(cls, batch: PixelRequest, indices: Sequence[int], batch_dim: int = 0) -> list[PixelRequest]:
        return [batch.slice_rows(start, stop) for start, stop in zip(indices[:-1], indices[1:], strict=True)]

    @classmethod
    def get_batch_size(cls, batch: PixelRequest, batch_dim: int) -> int:
        return batch.rows


class ResponseContainer(InProcessContainer, DataContainer[PredictResponse, ResponseBatch]):
    @classmethod
    def batch_to_batches(
        cls, batch: ResponseBatch, indices: Sequence[int], batch_dim: int = 0
    ) -> list[PredictResponse]:
        if len(batch.responses) != len(indices) - 1:
            raise RuntimeError(f"{len(batch.responses)} responses for {len(indices) - 1} requests")
        return batch.responses

    @classmethod
    def batches_to_batch(
        cls, batches: Sequence[PredictResponse], batch_dim: int = 0
    ) -> tuple[PredictResponse, list[int]]:
        """Merge the answers to the parts of a request the batcher split."""
        merged = batches[0].model_copy(update={"predictions": [p for b in batches for p in b.predictions]})
        return merged, [0, len(merged.predictions)]

    @classmethod
    def get_batch_size(cls, batch: PredictResponse, batch_dim: int) -> int:
        return len(batch.predictions)


def register_containers() -> None:
    """Idempotent: BentoML looks containers up by the type of what it batches, subclasses included."""
    DataContainerRegistry.register_container(PixelRequest, PixelRequest, RequestContainer)
    DataContainerRegistry.register_container(PredictResponse, ResponseBatch, ResponseContainer)
    DataContainerRegistry.register_container(PredictResponse, PredictResponse, ResponseContainer)
