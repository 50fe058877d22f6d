"""Request and response bodies. Validation runs while a request is parsed, before it joins a batch,
so one bad request is answered 400 on its own and never fails the requests batched with it."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictFloat, model_validator

from .runtime import Activation, InputError, validate_pixels
from .settings import settings

# fail_fast: report the first bad value, not 784 x N errors (a cheap way to flood logs and responses)
PixelRow = Annotated[list[StrictFloat], Field(fail_fast=True)]
ACTIVATION_DOC = "softmax or sigmoid; default: the model's head (softmax for 10 classes, sigmoid for the pigeon)"


def _example_image() -> list[float]:
    """A crude '1': a vertical bar, for the OpenAPI page's "try it out"."""
    image = np.zeros((28, 28), dtype=np.float32)
    image[4:24, 13:15] = 1.0
    return image.reshape(784).tolist()


class PixelRequest(BaseModel):
    """Base of every batchable request: after validation it holds `pixels`, (N, 784) float32 in [0, 1]."""

    activation: Activation | None = Field(default=None, description=ACTIVATION_DOC)
    _pixels: np.ndarray = PrivateAttr()

    @property
    def pixels(self) -> np.ndarray:
        return self._pixels

    @property
    def rows(self) -> int:
        return len(self._pixels)

    def slice_rows(self, start: int, stop: int) -> PixelRequest:
        """The same request restricted to rows [start, stop): how the batcher splits an oversized request."""
        part = self.model_copy()
        part._pixels = self._pixels[start:stop]
        return part


class PredictRequest(PixelRequest):
    model_config = ConfigDict(
        json_schema_extra={"example": {"images": [_example_image()], "activation": None}},
    )

    images: list[PixelRow] = Field(
        description="One row of 784 pixels per image, 28x28 row-major, values in [0, 1] (pixel / 255), "
        "white digit on black as in MNIST.",
        exclude=True,
        fail_fast=True,
    )

    @model_validator(mode="after")
    def _to_pixels(self) -> PredictRequest:
        try:
            pixels = np.asarray(self.images, dtype=np.float32)
        except ValueError as exc:  # ragged rows
            raise InputError("images", "every image must have exactly 784 values") from exc
        self._pixels = validate_pixels(pixels, "images", settings().limits.max_images)
        self.images = []  # the array is what travels on; drop the Python floats
        return self


class PredictBytesRequest(PixelRequest):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {  # OpenAPI 3.0's singular form: BentoML's spec model has no "examples"
                "data": base64.b64encode((np.array(_example_image()) * 255).astype(np.uint8).tobytes()).decode(),
                "format": "raw",
                "dtype": "uint8",
            }
        }
    )

    data: str = Field(
        description="base64 of the images: raw bytes (N x 784 values, row-major) or a .npy file "
        "of shape (N, 784) or (N, 28, 28)",
        exclude=True,
    )
    format: Literal["raw", "npy"] = Field(default="raw", description="raw bytes, or a NumPy .npy file")
    dtype: Literal["uint8", "float32"] = Field(
        default="uint8", description="raw only: uint8 pixels 0-255, or float32 in [0, 1]; .npy carries its own"
    )

    @model_validator(mode="after")
    def _to_pixels(self) -> PredictBytesRequest:
        try:
            raw = base64.b64decode(self.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError("data", "not valid base64") from exc
        if self.format == "npy":
            try:
                array = np.load(io.BytesIO(raw), allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise InputError("data", f"not a readable .npy file ({exc})") from exc
        else:
            itemsize = np.dtype(self.dtype).itemsize
            if len(raw) == 0 or len(raw) % (784 * itemsize):
                raise InputError(
                    "data", f"{len(raw)} bytes is not a whole number of {784 * itemsize}-byte {self.dtype} images"
                )
            array = np.frombuffer(raw, dtype=self.dtype).reshape(-1, 784)
        if array.dtype == np.uint8:
            array = array.astype(np.float32) / 255.0
        elif not np.issubdtype(array.dtype, np.floating):
            raise InputError("data", f"dtype {array.dtype} is not supported; use uint8 or float32")
        self._pixels = validate_pixels(array, "data", settings().limits.max_images)
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
    batching: BatchingInfo
    limits: dict[str, int]
    startup_seconds: float
