"""Request bodies to validated pixels: JSON rows, and the compact base64 forms (raw bytes or a .npy file).

Plain functions, called by the request models' validators (service/schemas.py), so that what decides a
request's pixels can be tested, and mutation-tested, on its own.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Literal

import numpy as np

from .runtime import NUM_PIXELS, InputError, validate_pixels

UINT8_SCALE = 255.0  # uint8 pixel -> [0, 1], as in training (torchvision's ToTensor)


def pixels_from_rows(images: list[list[float]], max_rows: int | None = None) -> np.ndarray:
    """JSON rows of 784 floats in [0, 1] -> (N, 784) float32."""
    try:
        pixels = np.asarray(images, dtype=np.float32)
    except ValueError as exc:  # ragged rows
        raise InputError("images", f"every image must have exactly {NUM_PIXELS} values") from exc
    return validate_pixels(pixels, "images", max_rows)


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
        try:
            array = np.load(io.BytesIO(raw), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError("data", f"not a readable .npy file ({exc})") from exc
    else:
        image_bytes = NUM_PIXELS * np.dtype(dtype).itemsize
        if len(raw) == 0 or len(raw) % image_bytes:
            raise InputError("data", f"{len(raw)} bytes is not a whole number of {image_bytes}-byte {dtype} images")
        array = np.frombuffer(raw, dtype=dtype).reshape(-1, NUM_PIXELS)
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / UINT8_SCALE
    elif not np.issubdtype(array.dtype, np.floating):
        raise InputError("data", f"dtype {array.dtype} is not supported; use uint8 or float32")
    return validate_pixels(array, "data", max_rows)
