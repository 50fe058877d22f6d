"""Request bodies to validated pixels: JSON rows, and the compact base64 forms (raw bytes or a .npy file).

Plain functions, called by the request models' validators (service/schemas.py), so that what decides a
request's pixels can be tested, and mutation-tested, on its own.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from typing import Literal

import numpy as np

from .metadata import INPUT_WIDTH
from .runtime import InputError, validate_pixels

NPY_MAX_HEADER = 1024  # bytes of .npy header; NumPy writes ~128 for a plain array
UINT8_SCALE = 255.0  # uint8 pixel -> [0, 1], as in training (torchvision's ToTensor)


def pixels_from_rows(images: list[list[float]], max_rows: int | None = None) -> np.ndarray:
    """JSON rows of 784 floats in [0, 1] -> (N, 784) float32."""
    try:
        pixels = np.asarray(images, dtype=np.float64)  # JSON numbers are doubles: 1e39 is out of range, not inf
    except ValueError as exc:  # ragged rows
        raise InputError("images", f"every image must have exactly {INPUT_WIDTH} values") from exc
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
        array = array_from_npy(raw, max_rows)
    else:
        image_bytes = INPUT_WIDTH * np.dtype(dtype).itemsize
        if len(raw) == 0 or len(raw) % image_bytes:
            raise InputError("data", f"{len(raw)} bytes is not a whole number of {image_bytes}-byte {dtype} images")
        array = np.frombuffer(raw, dtype=dtype).reshape(-1, INPUT_WIDTH)
    return validate_pixels(unit_range(array), "data", max_rows)


def unit_range(array: np.ndarray) -> np.ndarray:
    """uint8 pixels (0..255) -> float32 in [0, 1], as training saw them; float pixels as they are."""
    return array.astype(np.float32) / UINT8_SCALE if array.dtype == np.uint8 else array


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
        reason = str(exc).split(". ")[0].splitlines()[0] if str(exc) else exc.__class__.__name__
        raise InputError("data", f"not a readable .npy file ({reason})") from exc
    if len(shape) not in (2, 3) or math.prod(shape[1:]) != INPUT_WIDTH:
        raise InputError("data", f"expected shape (N, 784) or (N, 28, 28), got {tuple(shape)}")
    if max_rows is not None and shape[0] > max_rows:
        raise InputError("data", f"{shape[0]} images in one request; the limit is {max_rows}")
    if dtype.hasobject or not (dtype == np.uint8 or np.issubdtype(dtype, np.floating)):
        raise InputError("data", f"dtype {dtype} is not supported; use uint8 or float32")
    data = memoryview(raw)[stream.tell() :]
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise InputError(
            "data", f".npy data is {len(data)} bytes; its header declares {math.prod(shape) * dtype.itemsize}"
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")
    return array.reshape(len(array), INPUT_WIDTH)
