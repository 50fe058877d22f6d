"""The bad-input corpus: one hostile or broken request per entry, the status it must get and what the answer
must name. Every entry is one request a caller, a fuzzer or an attacker has sent (issue 8 lists the ones
that got a 5xx or a wrong answer); tests/service/test_bad_inputs.py sends each to the app in-process."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import struct
import zlib
from typing import Any

import numpy as np
from PIL import Image

BOUNDARY = "corpusboundary"


@dataclasses.dataclass
class BadRequest:
    name: str
    path: str
    status: int
    error: str  # a regex the "error" message must match
    field: str | None = None  # what "field" must say, when the problem has one
    content: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=lambda: {"content-type": "application/json"})
    method: str = "POST"

    def send(self, client: Any):  # noqa: ANN201 - a starlette TestClient and its response
        return client.request(self.method, self.path, content=self.content, headers=self.headers)


def as_json(name: str, path: str, body: Any, status: int, error: str, field: str | None = None) -> BadRequest:
    return BadRequest(name, path, status, error, field, json.dumps(body).encode())


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def npy(shape: tuple, descr: str = "|u1", data: bytes = b"", header_pad: int = 118) -> bytes:
    """A .npy file whose header declares `shape`, followed by `data` (not necessarily that much)."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}".ljust(header_pad) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG")
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_rows(width: int, height: int, rows: int) -> bytes:
    """An 8-bit greyscale PNG whose header says width x height but whose data holds only `rows` rows."""
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(rows))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def lab_tiff() -> bytes:
    out = io.BytesIO()
    Image.new("LAB", (28, 28), (50, 0, 0)).save(out, "TIFF")
    return out.getvalue()


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """(name, filename or None for a text field, content) -> a multipart/form-data body."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        kind = "Content-Type: image/png\r\n" if filename is not None else ""
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode() + content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def upload(name: str, status: int, error: str, *parts: tuple[str, str | None, bytes], field: str | None = None):  # noqa: ANN201
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    return BadRequest(name, "/predict_image", status, error, field, multipart(*parts), headers)


ROW = [0.0] * 784
SEVEN = png(np.pad(np.full((20, 4), 255, np.uint8), 4))  # a bar on black: a fine image, for the form cases

CORPUS: list[BadRequest] = [
    # /predict: JSON rows
    as_json("short row", "/predict", {"images": [[0.5] * 783]}, 400, r"expected shape \(N, 784\)", "images"),
    as_json("ragged rows", "/predict", {"images": [ROW, [0.0] * 10]}, 400, "exactly 784 values", "images"),
    as_json("no images", "/predict", {"images": []}, 400, "no images: send at least one", "images"),
    as_json("too many images", "/predict", {"images": [ROW] * 1025}, 400, "1025 images .* limit is 1024", "images"),
    as_json("out of range", "/predict", {"images": [[255.0] * 784]}, 400, r"values must be in \[0, 1\]", "images"),
    as_json("1e39", "/predict", {"images": [[1e39] * 784]}, 400, r"in \[0, 1\].*max 1e\+39", "images"),
    as_json("NaN", "/predict", {"images": [ROW, [*ROW[1:], float("nan")]]}, 400, "NaN or infinite", "images[1]"),
    as_json("Infinity", "/predict", {"images": [[*ROW[1:], float("inf")]]}, 400, "NaN or infinite", "images[0]"),
    as_json("a string pixel", "/predict", {"images": [["a"] * 784]}, 400, "valid number", "images[0][0]"),
    as_json("a boolean pixel", "/predict", {"images": [[True] * 784]}, 400, "valid number", "images[0][0]"),
    as_json("images not a list", "/predict", {"images": "pixels"}, 400, "valid array", "images"),
    as_json("images null", "/predict", {"images": None}, 400, "valid array", "images"),
    as_json("missing images", "/predict", {}, 400, "Field required", "images"),
    as_json("bad activation", "/predict", {"images": [ROW], "activation": "relu"}, 400, "softmax", "activation"),
    as_json("misspelt field", "/predict", {"images": [ROW], "activaton": "sigmoid"}, 400, "unknown field", "activaton"),
    as_json("not an object", "/predict", [ROW], 400, "must be a JSON object", "body"),
    BadRequest("not JSON", "/predict", 400, "not valid JSON", "body", b"{"),
    BadRequest("deeply nested", "/predict", 400, "not valid JSON", "body", b"[" * 100_000 + b"]" * 100_000),
    BadRequest("invalid UTF-8", "/predict", 400, "not valid JSON", "body", b'{"images": "\xff"}'),
    BadRequest("empty body", "/predict", 400, "not valid JSON", "body", b""),
    # /predict_bytes: base64, raw and .npy
    as_json("not base64", "/predict_bytes", {"data": "!!!"}, 400, "not valid base64", "data"),
    as_json("partial image", "/predict_bytes", {"data": b64(b"\0" * 700)}, 400, "not a whole number", "data"),
    as_json("unknown format", "/predict_bytes", {"data": "", "format": "png"}, 400, "'raw' or 'npy'", "format"),
    as_json("unknown dtype", "/predict_bytes", {"data": "", "dtype": "int64"}, 400, "'uint8' or 'float32'", "dtype"),
    as_json(
        "npy: not a .npy",
        "/predict_bytes",
        {"data": b64(b"hello"), "format": "npy"},
        400,
        "not a readable .npy",
        "data",
    ),
    as_json(
        "npy: header declares 10**12 images",
        "/predict_bytes",
        {"data": b64(npy((10**12, 784))), "format": "npy"},
        400,
        "1000000000000 images in one request; the limit is 1024",
        "data",
    ),
    as_json(
        "npy: header declares 5e6 images",
        "/predict_bytes",
        {"data": b64(npy((5_000_000, 784))), "format": "npy"},
        400,
        "5000000 images",
        "data",
    ),
    as_json(
        "npy: data shorter than the header says",
        "/predict_bytes",
        {"data": b64(npy((2, 784), data=b"\0" * 784)), "format": "npy"},
        400,
        "data is 784 bytes; its header declares 1568",
        "data",
    ),
    as_json(
        "npy: wrong shape",
        "/predict_bytes",
        {"data": b64(npy((2, 100), data=b"\0" * 200)), "format": "npy"},
        400,
        r"expected shape \(N, 784\).*\(2, 100\)",
        "data",
    ),
    as_json(
        "npy: int64",
        "/predict_bytes",
        {"data": b64(npy((1, 784), "<i8", b"\0" * 784 * 8)), "format": "npy"},
        400,
        "dtype int64 is not supported",
        "data",
    ),
    as_json(
        "npy: pickled objects",
        "/predict_bytes",
        {"data": b64(npy((1, 784), "|O", b"\0" * 784 * 8)), "format": "npy"},
        400,
        "dtype object is not supported",
        "data",
    ),
    as_json(
        "npy: a header of 60 kB",
        "/predict_bytes",
        {"data": b64(npy((1, 784), header_pad=60_000)), "format": "npy"},
        400,
        "not a readable .npy",
        "data",
    ),
    as_json(
        "float32 out of range",
        "/predict_bytes",
        {"data": b64(np.full(784, 3, np.float32).tobytes()), "dtype": "float32"},
        400,
        r"\[0, 1\]",
        "data",
    ),
    as_json("bytes: unknown field", "/predict_bytes", {"data": "", "base64": True}, 400, "unknown field", "base64"),
    # /predict_image: the form
    upload("file under another name", 400, "'file' is not a field", ("file", "seven.png", SEVEN), field="file"),
    upload("image as a text field", 400, "image: must be a file upload", ("image", None, b"hello"), field="image"),
    upload(
        "image as a URL",
        400,
        "URLs and text are not fetched",
        ("image", None, b"http://example.com/7.png"),
        field="image",
    ),
    upload("no image", 400, "image: missing", ("activation", None, b"softmax"), field="image"),
    upload("two images", 400, "Too many files", ("image", "a.png", SEVEN), ("image", "b.png", SEVEN)),
    upload(
        "an extra text field",
        400,
        "'note' is not a field",
        ("image", "a.png", SEVEN),
        ("note", None, b"hi"),
        field="note",
    ),
    upload(
        "bad activation",
        400,
        "activation: must be one of",
        ("image", "a.png", SEVEN),
        ("activation", None, b"relu"),
        field="activation",
    ),
    upload("empty file", 400, "empty upload", ("image", "a.png", b""), field="image"),
    upload("not an image", 400, "not a readable image", ("image", "a.png", b"hello"), field="image"),
    upload(
        "truncated PNG: one row of 1000",
        400,
        "truncated PNG",
        ("image", "a.png", png_with_rows(1000, 1000, 1)),
        field="image",
    ),
    upload(
        "PNG cut short",
        400,
        "not a readable image",
        ("image", "a.png", png(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8))[:300]),
        field="image",
    ),
    upload(
        "PNG signature then junk",
        400,
        "not a readable image",
        ("image", "a.png", b"\x89PNG\r\n\x1a\n" + b"junk" * 10),
        field="image",
    ),
    upload(
        "8000x8000 picture",
        400,
        "8000x8000 is larger than the 16,777,216-pixel limit",
        ("image", "a.png", png_with_rows(8000, 8000, 1)),
        field="image",
    ),
    upload("CIELab TIFF", 400, "image: ", ("image", "a.tif", lab_tiff()), field="image"),
    upload("a 300-character file name", 200, "", ("image", "a" * 300 + ".png", SEVEN)),
    BadRequest(
        "multipart type, body not multipart",
        "/predict_image",
        400,
        "not a valid multipart form",
        None,
        b"hello",
        {"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    ),
    BadRequest(
        "multipart without a boundary",
        "/predict_image",
        400,
        "not a valid multipart form",
        None,
        b"hello",
        {"content-type": "multipart/form-data"},
    ),
    BadRequest(
        "a urlencoded form",
        "/predict_image",
        415,
        "must be multipart/form-data",
        None,
        b"image=x",
        {"content-type": "application/x-www-form-urlencoded"},
    ),
    # /v2: the Open Inference Protocol
    as_json("v2: no inputs", "/v2/models/default/infer", {"inputs": []}, 400, "at least 1 item"),
    as_json("v2: another model", "/v2/models/nope/infer", {"inputs": []}, 404, "model 'nope' not found"),
    as_json(
        "v2: a float out of range",
        "/v2/models/default/infer",
        {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [1e39] * 784}]},
        400,
        r"in \[0, 1\]",
    ),
    BadRequest(
        "v2: an unknown route",
        "/v2/models/default/explain",
        404,
        "not part of the Open Inference Protocol",
        None,
        b"{}",
    ),
    BadRequest(
        "v2: a text body",
        "/v2/models/default/infer",
        415,
        "application/json or application/octet-stream",
        None,
        b"x",
        {"content-type": "text/plain"},
    ),
    # any route
    BadRequest(
        "wrong content type", "/predict", 415, "must be application/json", None, b"{}", {"content-type": "text/plain"}
    ),
    BadRequest("metadata: not a JSON object", "/metadata", 400, "must be a JSON object", "body", b"[1, 2]"),
    BadRequest(  # json.loads raised RecursionError: a 500
        "metadata: deeply nested", "/metadata", 400, "must be a JSON object", "body", b"[" * 100_000 + b"]" * 100_000
    ),
    BadRequest(
        "too many headers",
        "/predict",
        431,
        r"1\d\d headers",
        None,
        b"{}",
        {f"x-h{i}": "1" for i in range(120)} | {"content-type": "application/json"},
    ),
    BadRequest("a 20 kB header", "/metadata", 431, "the limits are", None, b"", {"x-big": "a" * 20_000}, method="GET"),
]
