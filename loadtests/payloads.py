"""Request bodies made from real MNIST test digits, and the check every response must pass.

Bodies are encoded once, up front, so the load generator spends its CPU sending, not serializing.
Scenarios: `json-N` (POST /predict with N images), `bytes-N` (POST /predict_bytes, base64 uint8),
`image` (POST /predict_image, a PNG upload).
"""

from __future__ import annotations

import base64
import functools
import io
import itertools
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE = Path(__file__).parent / "data" / "mnist_sample.npz"  # 512 test digits: images (uint8) and labels
DIGITS = [str(d) for d in range(10)]
POOL = 64  # distinct bodies per scenario, fewer for large requests (at most ~512 images encoded in all)


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    content_type: str
    images: int

    @property
    def kwargs(self) -> dict[str, Any]:
        return {"data": self.body, "headers": {"Content-Type": self.content_type}}


def load_sample() -> tuple[np.ndarray, np.ndarray]:
    with np.load(SAMPLE) as data:
        return data["images"], data["labels"]  # (512, 784) uint8, (512,) int64


def _png(row: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(row.reshape(28, 28)).save(buf, format="PNG")
    return buf.getvalue()


def _multipart(field: str, filename: str, content: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def build_requests(scenario: str, images: np.ndarray, pool: int | None = None) -> list[Request]:
    kind, _, count = scenario.partition("-")
    n = int(count) if count else 1
    pool = pool or max(2, min(POOL, len(images) // n))
    starts = [(i * n) % max(1, len(images) - n) for i in range(pool)]
    requests = []
    for start in starts:
        rows = images[start : start + n]
        if kind == "json":
            body = json.dumps({"images": np.round(rows / 255.0, 4).tolist()}).encode()
            requests.append(Request("/predict", body, "application/json", n))
        elif kind == "bytes":
            body = json.dumps({"data": base64.b64encode(rows.tobytes()).decode()}).encode()
            requests.append(Request("/predict_bytes", body, "application/json", n))
        elif kind == "image":
            body, content_type = _multipart("image", "digit.png", _png(images[start]), "image/png")
            requests.append(Request("/predict_image", body, content_type, 1))
        else:
            raise ValueError(f"scenario: got {scenario!r}; allowed: json-N, bytes-N, image")
    return requests


class Payloads:
    """A rotating pool of pre-encoded requests for one scenario."""

    def __init__(self, requests: list[Request]) -> None:
        self.requests = requests
        self._cycle = itertools.cycle(requests)

    @classmethod
    def load(cls, scenario: str) -> Payloads:
        """Each Locust user gets its own rotation over bodies encoded once per process."""
        return cls(_encoded(scenario))

    def next(self) -> Request:
        return next(self._cycle)


@functools.cache
def _encoded(scenario: str) -> list[Request]:
    return build_requests(scenario, load_sample()[0])


def check_response(body: dict[str, Any], request: Request) -> str | None:
    """None when the answer is right-shaped and self-consistent, else what is wrong (counted as a failure)."""
    predictions = body.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != request.images:
        return f"expected {request.images} predictions"
    for p in predictions:
        probs = p.get("probabilities")
        if not probs:
            return "no probabilities"
        if body.get("activation") == "softmax":
            if abs(sum(probs) - 1.0) > 1e-3:
                return "softmax probabilities do not sum to 1"
            label = p.get("label")
            if len(probs) == 10 and (label not in DIGITS or probs[int(label)] < max(probs)):
                return "label is not the most probable class"
    return None
