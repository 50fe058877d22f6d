"""Turn an uploaded picture of a digit into MNIST's convention: 28x28, white digit on black, [0, 1].

MNIST digits were size-normalized to fit a 20x20 box (keeping their aspect ratio) and centred by their
centre of mass in a 28x28 field. Photos and scans are usually dark ink on light paper, so an image whose
border is lighter than its middle is inverted first; an image that is already light-on-dark is kept.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .runtime import InputError

MAX_PIXELS = 4096 * 4096  # decompression-bomb guard: refuse larger pictures before decoding them
INK_THRESHOLD = 0.2  # fraction of full intensity above which a pixel counts as ink when cropping


def decode_image(data: bytes, field: str = "image") -> Image.Image:
    if not data:
        raise InputError(field, "empty upload: send a PNG or JPEG file")
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_PIXELS:
            raise InputError(field, f"{image.width}x{image.height} is larger than the {MAX_PIXELS:,}-pixel limit")
        image.load()
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(field, f"not a readable image ({exc.__class__.__name__}); send a PNG or JPEG file") from exc
    return image


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Any mode (RGBA, palette, 16-bit...) -> (H, W) float32 in [0, 1]; transparency is composited on white."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:  # alpha, or a transparent colour
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def light_background(gray: np.ndarray) -> bool:
    """Whether the border is lighter than the image as a whole: dark ink on paper."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(np.median(border)) > 0.5


def mnist_from_image(image: Image.Image) -> np.ndarray:
    """(784,) float32 in [0, 1]: inverted if needed, cropped to the ink, fit in 20x20, centred by mass in 28x28."""
    gray = to_grayscale(image)
    if light_background(gray):
        gray = 1.0 - gray
    ink = gray > INK_THRESHOLD * max(float(gray.max()), 1e-6)
    if not ink.any():
        return np.zeros(784, dtype=np.float32)  # a blank picture stays blank
    rows, cols = np.nonzero(ink)
    crop = gray[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = 20.0 / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))  # (width, height)
    digit = np.asarray(
        Image.fromarray((crop * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS), dtype=np.float32
    )
    digit /= 255.0
    canvas = np.zeros((28, 28), dtype=np.float32)
    top, left = (28 - digit.shape[0]) // 2, (28 - digit.shape[1]) // 2
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    # shift so the centre of mass lands on the centre, as MNIST did, without pushing ink off the canvas
    total = canvas.sum()
    cy = (canvas.sum(axis=1) * np.arange(28)).sum() / total
    cx = (canvas.sum(axis=0) * np.arange(28)).sum() / total
    dy = int(np.clip(round(13.5 - cy), -top, 28 - top - digit.shape[0]))
    dx = int(np.clip(round(13.5 - cx), -left, 28 - left - digit.shape[1]))
    canvas = np.roll(canvas, (dy, dx), axis=(0, 1))  # the clip above keeps ink from wrapping around
    return canvas.reshape(784)  # already in [0, 1]: uint8 / 255
