"""JSON rows (`POST /predict`): `{"images": [[784 floats in 0..1], ...], "activation"}` -> a validated request;
and the JSON answer of every door but v2's: a `PredictResponse` -> its bytes.

Validation runs while the body is parsed (the request model's validator), before the request joins a batch, so
one bad request is answered 400 on its own and never fails the requests batched with it.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import ConfigDict, Field, StrictFloat, model_validator

from ..artifact import INPUT_WIDTH
from ..errors import InputError
from ..schemas import PixelRequest, PredictResponse, example_image, parse
from .pixels import validate_pixels

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


def decode(body: bytes, max_images: int) -> PixelRequest:
    """A /predict body -> a validated request, or ClientError 400 naming the field."""
    return parse(PredictRequest.limited_to(max_images), body)


def encode(response: PredictResponse) -> bytes:
    """The JSON body of a 200 from /predict, /predict_bytes and /predict_image."""
    return PredictResponse.__pydantic_serializer__.to_json(response)


def pixels_from_rows(images: list[list[float]], max_rows: int | None = None) -> np.ndarray:
    """JSON rows of 784 floats in [0, 1] -> (N, 784) float32."""
    try:
        pixels = np.asarray(images, dtype=np.float64)  # JSON numbers are doubles: 1e39 is out of range, not inf
    except ValueError as exc:  # ragged rows
        raise InputError("images", f"every image must have exactly {INPUT_WIDTH} values") from exc
    return validate_pixels(pixels, "images", max_rows)
