"""Request and response bodies. Validation runs while a request is parsed, before it joins a batch,
so one bad request is answered 400 on its own and never fails the requests batched with it.

The image limit is a class attribute, not a setting read during validation: `service.service` builds the
request models with `limited_to(settings.limits.max_images)`, and the OpenAPI document states that limit."""

from __future__ import annotations

import base64
import time
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictFloat, model_validator

from .decoding import pixels_from_base64, pixels_from_rows
from .metadata import INPUT_WIDTH
from .runtime import Activation
from .settings import Limits

# fail_fast: report the first bad value, not 784 x N errors (a cheap way to flood logs and responses). The
# schema's bounds are what validate_pixels enforces, written into the OpenAPI document without a second,
# per-value check in pydantic (784 constraint checks per image on the hot path).
PixelRow = Annotated[
    list[StrictFloat],
    Field(
        fail_fast=True,
        json_schema_extra={
            "minItems": INPUT_WIDTH,
            "maxItems": INPUT_WIDTH,
            "items": {"type": "number", "minimum": 0, "maximum": 1},
        },
    ),
]


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
    def limited_to(cls, max_images: int) -> type[PixelRequest]:
        """This request model with its own image limit (MNIST_MAX_IMAGES), under the same name, so that the
        OpenAPI document and the error messages read as before."""
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


def _image_count_and_example(schema: dict[str, Any], model: type[PixelRequest]) -> None:
    """1 to the model's image limit, and an example for the OpenAPI page's "try it out"."""
    schema["properties"]["images"].update(minItems=1, maxItems=model.max_images)
    schema["example"] = {"images": [example_image()], "activation": None}


class PredictRequest(PixelRequest):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_image_count_and_example)

    images: list[PixelRow] = Field(
        description="One row of 784 pixels per image, 28x28 row-major, values in [0, 1] (pixel / 255), "
        "white digit on black as in MNIST.",
        fail_fast=True,
    )

    @model_validator(mode="after")
    def _to_pixels(self) -> PredictRequest:
        self._pixels = pixels_from_rows(self.images, self.max_images)
        self.images = []  # the array is what travels on; drop the Python floats
        return self


class PredictBytesRequest(PixelRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {  # OpenAPI 3.0's singular form: BentoML's spec model has no "examples"
                "data": EXAMPLE_DIGIT,
                "format": "raw",
                "dtype": "uint8",
            }
        },
    )

    data: str = Field(
        description="base64 of the images: raw bytes (N x 784 values, row-major) or a .npy file "
        "of shape (N, 784) or (N, 28, 28)",
        json_schema_extra={"minLength": 4, "pattern": "^[A-Za-z0-9+/]*={0,2}$"},
    )
    format: Literal["raw", "npy"] = Field(default="raw", description="raw bytes, or a NumPy .npy file")
    dtype: Literal["uint8", "float32"] = Field(
        default="uint8", description="raw only: uint8 pixels 0-255, or float32 in [0, 1]; .npy carries its own"
    )

    @model_validator(mode="after")
    def _to_pixels(self) -> PredictBytesRequest:
        self._pixels = pixels_from_base64(self.data, self.format, self.dtype, self.max_images)
        self.data = ""
        return self


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
