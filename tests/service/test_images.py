from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.images import decode_image, mnist_from_image
from service.runtime import InputError, ModelRuntime, RuntimeConfig
from tests.conftest import MODELS_DIR


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def digits(mnist_root: Path) -> tuple[np.ndarray, np.ndarray]:
    from torchvision.datasets import MNIST

    ds = MNIST(str(mnist_root), train=False, download=False)
    return ds.data[:40].numpy(), ds.targets[:40].numpy()


@pytest.mark.data
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
    assert mnist_from_image(Image.new("RGB", (50, 50), "white")).sum() == 0.0


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
