"""Golden pictures for the upload preprocessing, and their expected 28x28 outputs (tests/service/data/).

    python -m tests.service.golden_images     # rewrite the expected outputs after an intended change

The pictures are made here from the load tests' MNIST sample, so the file holds only the outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from loadtests.payloads import load_sample
from service.codecs.images import decode_image, mnist_from_image

GOLDEN = Path(__file__).parent / "data" / "golden_images.npz"


def pictures() -> dict[str, Image.Image]:
    """Uploads as people send them: a scan, a photo on a larger page, a transparent sticker, a faint pencil line."""
    images, _ = load_sample()
    scan = Image.fromarray(255 - images[0].reshape(28, 28)).convert("RGB").resize((140, 140), Image.Resampling.BICUBIC)
    page = Image.new("L", (90, 60), 235)
    page.paste(Image.fromarray(255 - images[3].reshape(28, 28)).resize((30, 45)), (50, 8))
    sticker = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    sticker.paste((20, 20, 20, 255), (20, 5, 27, 45))
    sticker.paste((20, 20, 20, 255), (10, 5, 27, 11))
    pencil = Image.new("L", (64, 64), 0)
    pencil.paste(110, (30, 8, 31, 56))  # a 1-pixel line at 43% intensity
    pencil.paste(15, (5, 5, 8, 8))  # a smudge under 20% of the brightest ink: not cropped to
    return {"scan": scan, "page": page, "sticker": sticker, "pencil": pencil}


def outputs() -> dict[str, np.ndarray]:
    def roundtrip(picture: Image.Image) -> np.ndarray:
        from io import BytesIO

        buf = BytesIO()
        picture.save(buf, format="PNG")
        return mnist_from_image(decode_image(buf.getvalue()))

    return {name: roundtrip(picture) for name, picture in pictures().items()}


def main() -> int:
    np.savez_compressed(GOLDEN, **outputs())
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
