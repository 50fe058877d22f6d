"""What travels between the codecs, the batcher and the model: a validated request (`PixelRequest`, the base
of each codec's request model), a `PredictResponse`, and the body of `GET /metadata` (`ModelInfo`).

The image limit is a class attribute, not a setting read during validation: each codec parses with its request
model `limited_to(settings.limits.max_images)` (one class per limit, shared with the OpenAPI page's methods in
service/app.py), and the OpenAPI document states that limit."""

from __future__ import annotations

import base64
import functools
import time
from typing import Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from .errors import ClientError
from .heads import Activation
from .settings import Limits

ACTIVATION_DOC = "softmax or sigmoid; default: the model's head (softmax for 10 classes, sigmoid for the pigeon)"


# A real digit for the API page's examples: the first image of MNIST's test set, a 7, as its 784 uint8 pixels in
# base64 (the service cannot read the load tests' sample, which is not in the bento).
EXAMPLE_DIGIT = (
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAFS5n5c8JAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAADe/v7+/vHGxsbGxsbGxqo0AAAAAAAAAAAAAAAAQ3JIcqPj/uH+/v765f7+jAAAAAAAAAAAAAAAAAAAAAAAEUIOQ0NDOxXs"
    "/moAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABT/dESAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAW6f9TAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAgf7uLAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAO/n+PgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIX+uwUAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAnN+DoAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB+/rYAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABL+/A5AAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAT3f6mAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAADy/7bIwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "Jv7+TQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAH+D+cwEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIX+/jQAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAD3y/v40AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB5/v7bKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAef7PEgAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
)


def example_image() -> list[float]:
    """The example digit as one JSON row of 784 values in [0, 1], for the OpenAPI page's "try it out"."""
    pixels = np.frombuffer(base64.b64decode(EXAMPLE_DIGIT), dtype=np.uint8)
    return [round(float(v), 4) for v in pixels / 255]


class PixelRequest(BaseModel):
    """Base of every batchable request: after validation it holds `pixels`, (N, 784) float32 in [0, 1]."""

    model_config = ConfigDict(extra="forbid")  # a misspelt "activaton" is refused, not ignored

    max_images: ClassVar[int] = Limits.max_images  # per request; see limited_to
    activation: Activation | None = Field(default=None, description=ACTIVATION_DOC)
    _pixels: np.ndarray = PrivateAttr()
    _queued_at: float = PrivateAttr(default=0.0)  # time.perf_counter() when it joined the batcher's queue

    @classmethod
    @functools.cache
    def limited_to(cls, max_images: int) -> type[PixelRequest]:
        """This request model with its own image limit (MNIST_MAX_IMAGES), under the same name, so that the
        OpenAPI document and the error messages read as before; one class per limit (cached), so the codec and
        the OpenAPI page's method describe the same model."""
        return type(cls.__name__, (cls,), {"max_images": max_images, "__module__": cls.__module__})

    # The reads below go to pydantic's private-attribute dict directly: `self._pixels` passes through
    # BaseModel.__getattr__, 1.4 us a read (pydantic 2.14), and the batcher reads these several times per request.
    @property
    def pixels(self) -> np.ndarray:
        return self.__pydantic_private__["_pixels"]

    @property
    def rows(self) -> int:
        return len(self.__pydantic_private__["_pixels"])

    @property
    def queued_at(self) -> float:
        return self.__pydantic_private__["_queued_at"]

    def mark_queued(self) -> None:
        """Note when the request joins the batcher's queue (the queue-wait metric counts from here)."""
        self._queued_at = time.perf_counter()

    @classmethod
    def of(cls, pixels: np.ndarray, activation: Activation | None = None) -> PixelRequest:
        """Already validated pixels (another door decoded them) as a request the batcher takes."""
        request = cls.model_construct(activation=activation)
        request._pixels = pixels
        return request

    def slice_rows(self, start: int, stop: int) -> PixelRequest:
        """The same request restricted to rows [start, stop): how the batcher splits an oversized request."""
        part = self.model_copy()
        part._pixels = self._pixels[start:stop]
        return part


Request = TypeVar("Request", bound=PixelRequest)


def parse(model: type[Request], body: bytes) -> Request:
    """A JSON body -> `model`, validated (pixels decoded and checked), or ClientError 400 naming the field."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise ClientError.from_validation(exc) from None


class Prediction(BaseModel):
    label: str = Field(description="predicted label (a digit, or the pigeon's class name)")
    probabilities: list[float] = Field(description="softmax: one per label, sum 1; sigmoid: one per output")


class PredictResponse(BaseModel):
    model: str
    version: str
    activation: Activation
    predictions: list[Prediction] = Field(description="one per image, in request order")


class BatchingInfo(BaseModel):
    enabled: bool
    max_batch_size: int
    max_latency_ms: int
    workers: int
    ort_intra_op_threads: int


class ModelInfo(BaseModel):
    name: str
    version: str
    head: Activation
    labels: list[str]
    activations: list[Activation]
    input: dict[str, Any]
    output: dict[str, Any]
    test_accuracy: float | None
    metrics: dict[str, Any]
    execution_provider: str
    # max |probability difference| from ONNX Runtime on the CPU, measured at start when serving on CUDA
    # (0 on the CPU, the reference); export's parity gate and the start-up check both allow 1e-5
    cpu_difference: float
    batching: BatchingInfo
    limits: dict[str, int]
    startup_seconds: float
