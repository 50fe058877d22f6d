"""The input contract every codec ends with: (N, 784) or (N, 28, 28) finite numbers in [0, 1], 1 to the image
limit, as (N, 784) float32. `check_images` is the one shape and image-limit check, made on an array's shape or
on a shape a header declares before anything is read (.npy, v2 tensors)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..artifact import INPUT_WIDTH
from ..errors import InputError

UINT8_SCALE = 255.0  # uint8 pixel -> [0, 1], as in training (torchvision's ToTensor)


def check_images(field: str, shape: Sequence[int], max_rows: int | None = None) -> None:
    """A shape of (N, 784) or (N, 28, 28) (any (N, a, b) with a * b = 784) with 1 <= N <= max_rows."""
    if len(shape) == 0 or shape[0] < 1:
        raise InputError(field, "no images: send at least one")
    if len(shape) not in (2, 3) or math.prod(shape[1:]) != INPUT_WIDTH:
        raise InputError(field, f"expected shape (N, 784) or (N, 28, 28), got {tuple(shape)}")
    if max_rows is not None and shape[0] > max_rows:
        raise InputError(field, f"{shape[0]} images in one request; the limit is {max_rows}")


def unit_range(array: np.ndarray) -> np.ndarray:
    """uint8 pixels (0..255) -> float32 in [0, 1], as training saw them; float pixels as they are."""
    return array.astype(np.float32) / UINT8_SCALE if array.dtype == np.uint8 else array


def validate_pixels(pixels: np.ndarray, field: str = "images", max_rows: int | None = None) -> np.ndarray:
    """Check the input contract on decoded pixels; return them as (N, 784) float32."""
    check_images(field, pixels.shape, max_rows)
    pixels = pixels.reshape(len(pixels), INPUT_WIDTH)
    if not np.issubdtype(pixels.dtype, np.number):
        raise InputError(field, f"values must be numbers, got dtype {pixels.dtype}")
    # Checked before the cast to float32, which would turn 1e39 into inf. NaN propagates through min and max,
    # so one pass checks all (hot path).
    low, high = float(pixels.min()), float(pixels.max())
    if not (low >= 0.0 and high <= 1.0):
        if not np.isfinite(pixels).all():
            row = int(np.nonzero(~np.isfinite(pixels).all(axis=1))[0][0])
            raise InputError(f"{field}[{row}]", "NaN or infinite value")
        raise InputError(field, f"values must be in [0, 1] (pixel / 255); got min {low:g}, max {high:g}")
    return np.ascontiguousarray(pixels, dtype=np.float32)
