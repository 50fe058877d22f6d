from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.codecs import images
from service.codecs.images import (
    ADAM7,
    decode_image,
    light_background,
    mnist_from_image,
    pixels_from_upload,
    png_data_complete,
    to_grayscale,
)
from service.errors import InputError
from service.runtime import ModelRuntime, RuntimeConfig
from tests.conftest import MODELS_DIR
from tests.service.bad_inputs import png_chunk, png_with_rows

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def digits(sample: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return sample[0][:40].reshape(40, 28, 28), sample[1][:40]


@pytest.mark.parametrize("style", ["as-is", "dark-on-light-rgb-large", "jpeg-small-offset"])
def test_uploaded_mnist_digits_are_classified(style: str, digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    runtime = ModelRuntime(RuntimeConfig(models_dir=str(MODELS_DIR), model="default"))
    rows = []
    for image in images:
        if style == "as-is":
            picture = Image.fromarray(image)
        elif style == "dark-on-light-rgb-large":
            picture = Image.fromarray(255 - image).convert("RGB").resize((300, 300), Image.Resampling.BICUBIC)
        else:  # on a bigger canvas, off-centre, white paper, JPEG
            canvas = Image.new("L", (64, 48), 255)
            canvas.paste(Image.fromarray(255 - image), (5, 12))
            picture = canvas
        fmt = "JPEG" if style.startswith("jpeg") else "PNG"
        rows.append(mnist_from_image(decode_image(png_bytes(picture, fmt))))
    predicted = runtime.predict(np.stack(rows)).label_indices
    assert (predicted == labels).mean() >= 0.95  # the raw test images score 99%; resampling costs a little


def test_output_is_mnist_convention() -> None:
    picture = Image.new("L", (100, 60), 255)  # white paper
    picture.paste(0, (40, 10, 50, 50))  # a black vertical bar
    x = mnist_from_image(picture).reshape(28, 28)
    assert x.dtype == np.float32
    assert x.min() >= 0.0
    assert x.max() <= 1.0
    assert x[0].max() == 0.0  # background became black
    assert x[14, 14] > 0.5  # the bar is white and centred
    assert (x > 0.5).sum(axis=0).max() <= 20  # fit in the 20-pixel box


def test_blank_picture_stays_blank() -> None:
    x = mnist_from_image(Image.new("RGB", (50, 50), "white"))
    assert x.shape == (784,)
    assert x.dtype == np.float32
    assert not x.any()


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_centring_by_mass_never_pushes_ink_off_the_canvas(rotation: int) -> None:
    page = Image.new("L", (60, 60), 0)
    page.paste(255, (10, 10, 50, 22))  # a heavy bar: the centre of mass sits near one end of the glyph
    page.paste(255, (29, 22, 31, 50))  # and a thin stem
    x = mnist_from_image(page.rotate(rotation)).reshape(28, 28)
    rows, cols = np.nonzero(x > 0.5)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (20, 20)  # whole: nothing wrapped around
    assert x.sum() == pytest.approx(mnist_from_image(page).sum(), rel=2e-3)  # all the ink of the upright glyph


def test_transparent_png_is_composited_on_white() -> None:
    picture = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # fully transparent
    picture.paste((0, 0, 0, 255), (15, 5, 25, 35))
    x = mnist_from_image(decode_image(png_bytes(picture))).reshape(28, 28)
    assert x[14, 14] > 0.5
    assert x[0, 0] == 0.0


@pytest.mark.parametrize("payload", [b"", b"definitely not an image", b"\x89PNG\r\n\x1a\n truncated"])
def test_corrupt_upload_is_an_input_error(payload: bytes) -> None:
    with pytest.raises(InputError, match="image"):
        decode_image(payload)


@pytest.mark.parametrize("name", ["scan", "page", "sticker", "pencil"])
def test_golden_pictures_give_their_recorded_28x28(name: str) -> None:
    """Regression: the preprocessing of four typical uploads, recorded by tests/service/golden_images.py."""
    from tests.service.golden_images import GOLDEN, outputs

    with np.load(GOLDEN) as expected:
        np.testing.assert_allclose(outputs()[name], expected[name], atol=1e-6)


# A "T" drawn in black on white paper, its ink exactly 20x20 (a 4-pixel bar over a 4-pixel stem), and what the
# preprocessing must make of it, worked out by hand from the rules (README, "The HTTP API") rather than recorded
# from the code: inverted to white on black; cropped to the ink (20x20, so no resampling); placed in 28x28 and
# shifted so its centre of mass lands on the centre (13.5, 13.5) without pushing ink off the canvas. Its centre
# of mass, within the glyph: columns 9.5 (symmetric); rows (80 px at 1.5 + 64 px at 11.5) / 144 = 5.94. So its
# columns start at 13.5 - 9.5 = 4, and its rows at round(13.5 - 5.94) = 8 (= 28 - 20: the lowest row it can
# take, its stem ending on the last row).
HAND_DERIVED_T = """
............................
............................
............................
............................
............................
............................
............................
............................
....####################....
....####################....
....####################....
....####################....
............####............
............####............
............####............
............####............
............####............
............####............
............####............
............####............
............####............
............####............
............####............
............####............
............####............
............####............
............####............
............####............
"""


def test_a_golden_picture_gives_the_28x28_derived_by_hand() -> None:
    page = Image.new("RGB", (70, 50), "white")
    page.paste((0, 0, 0), (31, 9, 51, 13))  # the bar: 20 wide, 4 tall, off-centre on the page
    page.paste((0, 0, 0), (39, 13, 43, 29))  # the stem: 4 wide, 16 tall, under the bar's middle
    x = mnist_from_image(decode_image(png_bytes(page))).reshape(28, 28)
    expected = np.array([[c == "#" for c in row] for row in HAND_DERIVED_T.split()], dtype=np.float32)
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize(("height", "width"), [(40, 12), (12, 40), (30, 30), (80, 21)])
def test_a_block_is_fit_in_20x20_keeping_its_aspect_and_centred_by_mass(height: int, width: int) -> None:
    page = Image.new("L", (200, 160), 255)  # white paper, the block off-centre
    page.paste(0, (70, 50, 70 + width, 50 + height))
    x = mnist_from_image(page).reshape(28, 28)
    rows, cols = np.nonzero(x > 0.5)
    long_side = max(height, width)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (
        round(height * 20 / long_side),
        round(width * 20 / long_side),
    )
    assert x.max() == 1.0  # full ink stays full
    total = x.sum()
    centre = ((x.sum(axis=1) * np.arange(28)).sum() / total, (x.sum(axis=0) * np.arange(28)).sum() / total)
    assert abs(centre[0] - 13.5) <= 0.5
    assert abs(centre[1] - 13.5) <= 0.5


def test_a_one_pixel_line_stays_one_pixel_wide() -> None:
    page = Image.new("L", (60, 60), 0)
    page.paste(255, (30, 5, 31, 55))  # vertical, light on dark
    x = mnist_from_image(page).reshape(28, 28)
    assert (x > 0).any(axis=0).sum() == 1
    assert (x > 0).any(axis=1).sum() == 20
    flat = mnist_from_image(page.transpose(Image.Transpose.ROTATE_90)).reshape(28, 28)
    assert (flat > 0).any(axis=1).sum() == 1


def test_dark_on_light_and_light_on_dark_give_the_same_digit() -> None:
    page = Image.new("L", (50, 70), 0)
    page.paste(255, (10, 10, 16, 60))
    page.paste(200, (16, 10, 40, 16))
    light_on_dark = mnist_from_image(page)
    dark_on_light = mnist_from_image(Image.eval(page, lambda v: 255 - v))
    np.testing.assert_allclose(dark_on_light, light_on_dark, atol=1e-6)


EDGES = {"top": (0, slice(None)), "bottom": (-1, slice(None)), "left": (slice(None), 0), "right": (slice(None), -1)}


@pytest.mark.parametrize("edge", list(EDGES))
def test_the_background_is_judged_by_the_outermost_line_of_every_edge(edge: str) -> None:
    """One long edge and one short edge light: paper by a small margin, which the long edge alone decides."""
    wide = edge in ("top", "bottom")
    gray = np.zeros((6, 20) if wide else (20, 6), np.float32)
    short = "left" if wide else "top"
    gray[EDGES[short]] = 1.0
    assert not light_background(gray)
    gray[EDGES[edge]] = 1.0
    assert light_background(gray)


def test_a_border_exactly_half_light_is_not_paper() -> None:
    assert not light_background(np.full((10, 10), 0.5, np.float32))  # "lighter than 50% grey"
    assert light_background(np.full((10, 10), 0.5 + 1 / 255, np.float32))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "P", "L", "RGB"])
def test_transparency_is_composited_on_white_in_every_mode(mode: str) -> None:
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.paste((51, 51, 51, 255), (2, 2, 6, 6))
    if mode in ("P", "L", "RGB"):  # a transparent colour (PNG's tRNS chunk) rather than an alpha channel
        picture = rgba.convert("RGB").convert(mode)
        picture.info["transparency"] = picture.getpixel((0, 0))
    elif mode == "PA":
        picture = rgba.convert("PA")
    else:
        picture = rgba.convert(mode)
    gray = to_grayscale(picture)
    assert gray.dtype == np.float32
    assert gray[0, 0] == 1.0  # transparent: white paper
    assert gray[3, 3] == pytest.approx(51 / 255, abs=1 / 255)  # opaque: its own grey


@pytest.mark.parametrize("mode", ["L", "RGB", "P"])
def test_opaque_pictures_are_scaled_to_0_1(mode: str) -> None:
    gray = to_grayscale(Image.new("L", (3, 3), 51).convert(mode))
    np.testing.assert_array_equal(gray, np.full((3, 3), 51 / 255, np.float32))


def test_the_brightest_ink_sets_the_crop_threshold() -> None:
    faint = Image.new("L", (60, 60), 0)
    faint.paste(100, (20, 10, 26, 50))  # the stroke, at 39% intensity
    faint.paste(25, (50, 50, 52, 52))  # 25% of the stroke's intensity: ink, so inside the crop
    assert ink_width(mnist_from_image(faint)) >= 12  # the crop reaches the speck, 30 pixels to the right
    faint.paste(15, (50, 50, 52, 52))  # 15%: below the 20% threshold, left out of the crop
    assert ink_width(mnist_from_image(faint)) <= 5  # the stroke alone, scaled to 20 rows


def ink_width(x: np.ndarray) -> int:
    cols = np.nonzero((x.reshape(28, 28) > 0).any(axis=0))[0]
    return int(cols.max() - cols.min() + 1)


def test_the_size_limit_is_named_and_exact() -> None:
    at_limit = png_bytes(Image.new("L", (4096, 4096), 255))
    assert decode_image(at_limit).size == (4096, 4096)
    with pytest.raises(InputError, match=r"^image: 4097x4096 is larger than the 16,777,216-pixel limit$"):
        decode_image(png_bytes(Image.new("L", (4097, 4096), 255)))


def test_decoding_errors_name_the_field_and_the_fix() -> None:
    with pytest.raises(InputError, match="^image: empty upload: send a PNG or JPEG file$"):
        pixels_from_upload(b"")
    with pytest.raises(
        InputError,
        match=r"^image: not a readable image \(UnidentifiedImageError: cannot identify image file .*\); send a PNG",
    ):
        decode_image(b"definitely not an image")


def sixteen_bit(gray8: np.ndarray) -> Image.Image:
    return Image.fromarray(gray8.astype(np.uint16) * 257)  # 0..255 -> 0..65535: the same picture in 16 bits


def test_16_bit_greyscale_is_scaled_not_clipped(default_runtime: ModelRuntime) -> None:
    """Pillow's convert("L") clips 16-bit values at 255: a 7 as a 16-bit PNG was answered "8", as a scan "5"."""
    seven = np.asarray(decode_image((EXAMPLES / "seven.png").read_bytes()).convert("L"))
    wide = decode_image(png_bytes(sixteen_bit(seven)))
    assert wide.mode == "I;16"
    np.testing.assert_array_equal(mnist_from_image(wide), mnist_from_image(Image.fromarray(seven)))
    scan = (0.2 + 0.7 * (seven / 255.0)) * 65535  # ink at 20%, paper at 90%, as a 16-bit scanner writes it
    as_scan = mnist_from_image(decode_image(png_bytes(Image.fromarray(scan.astype(np.uint16)))))
    assert default_runtime.predict(as_scan.reshape(1, 784)).label_indices.tolist() == [7]


def test_16_bit_transparent_colour_is_white() -> None:
    image = sixteen_bit(np.zeros((4, 4), np.uint8))
    image.info["transparency"] = 0
    assert to_grayscale(image).tolist() == np.ones((4, 4)).tolist()


def test_a_float_tiff_is_scaled_by_its_maximum() -> None:
    image = Image.fromarray(np.array([[0.0, 500.0], [1000.0, np.nan]], np.float32))
    assert to_grayscale(image).tolist() == [[0.0, 0.5], [1.0, 0.0]]


def test_a_faint_mark_on_white_is_blank_not_nan() -> None:
    page = np.full((50, 50), 255, np.uint8)
    page[10, 10] = 254  # inverted and scaled: 1/255, which rounds away when the crop is resized at 8 bits
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in divide"
        pixels = pixels_from_upload(png_bytes(Image.fromarray(page)))
    assert pixels.tolist() == [0.0] * 784


def interlaced_png(width: int, height: int, keep: float = 1.0) -> bytes:
    """A greyscale Adam7 PNG by hand (Pillow reads them but cannot write them); `keep` of its data."""
    raw = b""
    for x0, y0, dx, dy in ADAM7:
        cols, rows = len(range(x0, width, dx)), len(range(y0, height, dy))
        if cols and rows:
            raw += (b"\x00" + b"\x7f" * cols) * rows
    data = zlib.compress(raw[: int(len(raw) * keep)])
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


@pytest.mark.parametrize(("width", "height"), [(1, 1), (3, 5), (17, 9), (64, 64)])
def test_whole_png_data_is_complete_and_a_short_one_is_not(width: int, height: int) -> None:
    whole = interlaced_png(width, height)
    assert png_data_complete(whole)
    assert decode_image(whole).size == (width, height)
    assert not png_data_complete(interlaced_png(width, height, keep=0.9))
    assert png_data_complete(png_with_rows(width, height, height))
    assert not png_data_complete(png_with_rows(width, height, height - 1))


# The completeness check reads untrusted chunk lists: what it must not be fooled by (survivors of issue 18's
# mutation run over png_data_complete).
SIGNATURE = b"\x89PNG\r\n\x1a\n"


def grey_header(width: int, height: int) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))


def noisy_rows(width: int, height: int) -> bytes:
    """Filter byte 0 and random pixels per row: data zlib cannot shrink, so half the stream is half the rows."""
    pixels = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
    return b"".join(b"\x00" + row.tobytes() for row in pixels)


def test_a_13_byte_chunk_that_is_not_the_header_is_not_read_as_one() -> None:
    whole = png_with_rows(8, 2, 2)
    text = png_chunk(b"tEXt", b"k\x00" + b"v" * 11)  # 13 bytes, like IHDR's body
    header_end = len(SIGNATURE) + 25
    assert png_data_complete(whole[:header_end] + text + whole[header_end:])


def test_image_data_after_the_end_chunk_does_not_count() -> None:
    stream = zlib.compress(noisy_rows(64, 8))
    half = len(stream) // 2
    png = grey_header(64, 8) + png_chunk(b"IDAT", stream[:half]) + png_chunk(b"IEND", b"")
    assert not png_data_complete(SIGNATURE + png + png_chunk(b"IDAT", stream[half:]))


def test_the_check_stops_once_every_row_is_there() -> None:
    """A complete stream then a damaged chunk: the rows are all there, whatever follows them is not read."""
    stream = zlib.compress(noisy_rows(64, 8))
    png = grey_header(64, 8) + png_chunk(b"IDAT", stream) + png_chunk(b"IDAT", b"\xff" * 16) + png_chunk(b"IEND", b"")
    assert png_data_complete(SIGNATURE + png)


def test_lengths_and_sizes_past_2_to_the_31_are_read_unsigned() -> None:
    rows = png_chunk(b"IDAT", zlib.compress(b"\x00" * 9))
    huge_width = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2**31 + 8, 1, 8, 0, 0, 0, 0))
    assert not png_data_complete(SIGNATURE + huge_width + rows + png_chunk(b"IEND", b""))
    huge_chunk = struct.pack(">I", 2**32 - 16) + b"tEXt" + b"x" * 20  # its length runs past the end of the file
    assert not png_data_complete(SIGNATURE + grey_header(8, 1) + huge_chunk + rows)


def test_a_png_cut_short_is_not_complete_and_raises_nothing() -> None:
    stream = zlib.compress(noisy_rows(64, 8))
    whole = SIGNATURE + grey_header(64, 8) + png_chunk(b"IDAT", stream) + png_chunk(b"IEND", b"")
    assert png_data_complete(whole)
    assert not png_data_complete(whole[:-200])  # IEND and the end of IDAT gone
    assert png_data_complete(whole[:-10])  # every row there; only 2 bytes of the IEND chunk, too few to read


def test_image_data_that_does_not_inflate_is_not_complete() -> None:
    png = SIGNATURE + grey_header(8, 1) + png_chunk(b"IDAT", b"\xff" * 16) + png_chunk(b"IEND", b"")
    assert not png_data_complete(png)


def test_a_decoders_long_complaint_is_cut_to_200_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    def complain(stream: io.BytesIO) -> Image.Image:
        raise ValueError("x" * 300)

    monkeypatch.setattr(images.Image, "open", complain)
    with pytest.raises(InputError) as refused:
        decode_image(b"anything")
    reason = "ValueError: " + "x" * (200 - len("ValueError: "))
    assert str(refused.value) == f"image: not a readable image ({reason}); send a PNG or JPEG file"


def test_32_bit_integer_pixels_past_16_bits_are_white_and_negative_ones_black() -> None:
    gray = to_grayscale(Image.fromarray(np.array([[0, 32768, 70000, -5]], dtype=np.int32)))
    np.testing.assert_allclose(gray, [[0.0, 32768 / 65535, 1.0, 0.0]], rtol=1e-6)


def test_a_float_pictures_infinities_and_nans_are_black() -> None:
    gray = to_grayscale(Image.fromarray(np.array([[np.inf, -np.inf, np.nan, 0.5]], dtype=np.float32)))
    np.testing.assert_array_equal(gray, [[0.0, 0.0, 0.0, 0.5]])


def test_a_truncated_png_is_refused_not_zero_filled() -> None:
    with pytest.raises(InputError, match="^image: truncated PNG: its image data ends before the last row"):
        decode_image(png_with_rows(1000, 1000, 1))


def test_a_mode_that_cannot_become_grey_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(image: Image.Image) -> np.ndarray:
        raise ValueError("conversion from LAB to L not supported")

    monkeypatch.setattr(images, "to_grayscale", broken)
    with pytest.raises(InputError, match=r"^image: cannot be converted to greyscale \(L: conversion from LAB"):
        pixels_from_upload(png_bytes(Image.new("L", (8, 8))))
