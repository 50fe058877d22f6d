"""The compact wire form (`POST /predict_bytes`): a JSON body whose `data` is base64 of raw uint8 or float32
N x 784 bytes, or of a .npy file -> a validated request. Its answer is JSON, written by service/codecs/rows.py.

The functions are plain, so that what decides a request's pixels can be tested, and mutation-tested, on its
own; the request model's validator calls them while the body is parsed.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from typing import Literal

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from ..artifact import INPUT_WIDTH
from ..errors import InputError
from ..schemas import EXAMPLE_DIGIT, PixelRequest, parse
from .pixels import check_images, unit_range, validate_pixels

NPY_MAX_HEADER = 1024  # bytes of .npy header; NumPy writes ~128 for a plain array


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


def decode(body: bytes, max_images: int) -> PixelRequest:
    """A /predict_bytes body -> a validated request, or ClientError 400 naming the field."""
    return parse(PredictBytesRequest.limited_to(max_images), body)


def pixels_from_base64(
    data: str,
    format: Literal["raw", "npy"] = "raw",
    dtype: Literal["uint8", "float32"] = "uint8",
    max_rows: int | None = None,
) -> np.ndarray:
    """base64 of raw N x 784 `dtype` values, or of a .npy file of (N, 784) or (N, 28, 28) -> (N, 784) float32."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError("data", "not valid base64") from exc
    if format == "npy":
        array = array_from_npy(raw, max_rows)
    else:
        image_bytes = INPUT_WIDTH * np.dtype(dtype).itemsize
        if len(raw) == 0 or len(raw) % image_bytes:
            raise InputError("data", f"{len(raw)} bytes is not a whole number of {image_bytes}-byte {dtype} images")
        array = np.frombuffer(raw, dtype=dtype).reshape(-1, INPUT_WIDTH)
    return validate_pixels(unit_range(array), "data", max_rows)


def array_from_npy(raw: bytes, max_rows: int | None = None) -> np.ndarray:
    """A .npy file's array, its header checked first: a header may declare any shape, and np.load would
    allocate it (a (10**12, 784) header was a MemoryError, a (5e6, 784) one 15.7 GB) before finding the data
    short. Only (N, 784) and (N, 28, 28) of uint8 or floats within the image limit are read, without a copy."""
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"unsupported .npy version {version}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream, max_header_size=NPY_MAX_HEADER)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__  # NumPy's first line says it
        raise InputError("data", f"not a readable .npy file ({reason})") from exc
    check_images("data", shape, max_rows)
    if dtype.hasobject or not (dtype == np.uint8 or np.issubdtype(dtype, np.floating)):
        raise InputError("data", f"dtype {dtype} is not supported; use uint8 or float32")
    data = memoryview(raw)[stream.tell() :]
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise InputError(
            "data", f".npy data is {len(data)} bytes; its header declares {math.prod(shape) * dtype.itemsize}"
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")
    return array.reshape(len(array), INPUT_WIDTH)
