"""Turn an uploaded picture of a digit into MNIST's convention: 28x28, white digit on black, [0, 1].

MNIST digits were size-normalized to fit a 20x20 box (keeping their aspect ratio) and centred by their
centre of mass in a 28x28 field. Photos and scans are usually dark ink on light paper, so an image whose
border is lighter than its middle is inverted first; an image that is already light-on-dark is kept.

Uploads are untrusted: `pixels_from_upload` is the one entry point, and whatever the decoder raises on a
hostile or broken file (Pillow raises OSError, SyntaxError, ValueError, TypeError, struct.error, ... by
format) becomes an InputError, answered 400.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageOps

from ..artifact import IMAGE_SIDE, INPUT_WIDTH
from ..errors import InputError

MAX_PIXELS = 4096 * 4096  # decompression-bomb guard: refuse larger pictures before decoding them
INK_THRESHOLD = 0.2  # fraction of full intensity above which a pixel counts as ink when cropping
FIELD = "image"  # the form field an upload arrives in (codecs/upload.py); errors name it
CENTRE = (IMAGE_SIDE - 1) / 2  # of the 28x28 field, in pixel coordinates
WIDE_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # IHDR colour type -> samples per pixel
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def pixels_from_upload(data: bytes) -> np.ndarray:
    """An uploaded file -> (784,) float32 in [0, 1], or InputError naming the problem."""
    image = decode_image(data)
    try:
        return mnist_from_image(image)
    except (InputError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a mode or file Pillow opened but cannot convert
        raise InputError(FIELD, f"cannot be converted to greyscale ({image.mode}: {exc}); send a PNG or JPEG") from exc


def decode_image(data: bytes) -> Image.Image:
    if not data:
        raise InputError(FIELD, "empty upload: send a PNG or JPEG file")
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_PIXELS:
            raise InputError(FIELD, f"{image.width}x{image.height} is larger than the {MAX_PIXELS:,}-pixel limit")
        image.load()
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - every decoder failure on untrusted bytes is the client's file
        reason = f"{exc.__class__.__name__}: {exc}"[:200]
        raise InputError(FIELD, f"not a readable image ({reason}); send a PNG or JPEG file") from exc
    if data.startswith(PNG_SIGNATURE) and not png_data_complete(data):
        raise InputError(FIELD, "truncated PNG: its image data ends before the last row; send the whole file")
    return image


def png_data_complete(data: bytes) -> bool:
    """Whether the PNG's compressed data holds every row its header declares (Pillow zero-fills the rest)."""
    pos, idat = len(PNG_SIGNATURE), []
    width = height = depth = colour = interlace = 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR" and len(body) == 13:
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    bits = PNG_CHANNELS.get(colour, 1) * depth
    if interlace:
        passes = [
            (-(-(height - y0) // dy), -(-(width - x0) // dx)) for x0, y0, dx, dy in ADAM7 if width > x0 and height > y0
        ]
    else:
        passes = [(height, width)]
    expected = sum(rows * (1 + -(-cols * bits // 8)) for rows, cols in passes)
    try:  # inflate no more than the rows need (max_length; 0 would mean no limit): what follows is never read
        got = len(zlib.decompressobj().decompress(b"".join(idat), max(expected, 1)))
    except zlib.error:
        return False
    return got >= expected


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Any mode (RGBA, palette, 16-bit...) -> (H, W) float32 in [0, 1]; transparency is composited on white."""
    image = ImageOps.exif_transpose(image)
    if image.mode in WIDE_MODES:  # 16-bit greyscale: scale to [0, 1]; Pillow's convert("L") clips at 255
        wide = np.asarray(image, dtype=np.float32)
        gray = np.clip(wide / WIDE_MODES[image.mode], 0.0, 1.0)
        if "transparency" in image.info:
            gray[wide == image.info["transparency"]] = 1.0
        return gray
    if image.mode == "F":  # 32-bit float (TIFF): [0, 1] as is, anything larger scaled by its own maximum
        gray = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(gray.max()) if gray.size else 0.0
        return np.clip(gray / top if top > 1.0 else gray, 0.0, 1.0)
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
        return np.zeros(INPUT_WIDTH, dtype=np.float32)  # a blank picture stays blank
    rows, cols = np.nonzero(ink)
    crop = gray[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = 20.0 / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))  # (width, height)
    digit = np.asarray(
        Image.fromarray((crop * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS), dtype=np.float32
    )
    digit /= 255.0
    canvas = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    top, left = (IMAGE_SIDE - digit.shape[0]) // 2, (IMAGE_SIDE - digit.shape[1]) // 2
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    total = canvas.sum()
    if total == 0:  # faint ink (a 254 on 255 white) that rounds away at 8 bits: nothing left to centre
        return canvas.reshape(INPUT_WIDTH)
    # shift so the centre of mass lands on the centre, as MNIST did, without pushing ink off the canvas
    cy = (canvas.sum(axis=1) * np.arange(IMAGE_SIDE)).sum() / total
    cx = (canvas.sum(axis=0) * np.arange(IMAGE_SIDE)).sum() / total
    dy = int(np.clip(round(CENTRE - cy), -top, IMAGE_SIDE - top - digit.shape[0]))
    dx = int(np.clip(round(CENTRE - cx), -left, IMAGE_SIDE - left - digit.shape[1]))
    canvas = np.roll(canvas, (dy, dx), axis=(0, 1))  # the clip above keeps ink from wrapping around
    return canvas.reshape(INPUT_WIDTH)  # already in [0, 1]: uint8 / 255
