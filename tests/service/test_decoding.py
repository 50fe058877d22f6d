"""Request bodies to pixels: the JSON rows and the compact base64 forms give the model the same numbers."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service.codecs.npy import PredictBytesRequest, array_from_npy, pixels_from_base64
from service.codecs.rows import PredictRequest, pixels_from_rows
from service.errors import InputError
from service.predictor import Predictor

IMAGES = arrays(np.uint8, st.tuples(st.integers(1, 4), st.just(784)))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def npy(array: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, array)
    return b64(buf.getvalue())


@given(IMAGES)
def test_uint8_bytes_are_scaled_by_255_exactly(images: np.ndarray) -> None:
    expected = images.astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(pixels_from_base64(b64(images.tobytes())), expected)
    np.testing.assert_array_equal(pixels_from_base64(npy(images), "npy"), expected)
    np.testing.assert_array_equal(pixels_from_base64(npy(images.reshape(-1, 28, 28)), "npy"), expected)


@given(arrays(np.float32, st.tuples(st.integers(1, 4), st.just(784)), elements=st.floats(0, 1, width=32)))
def test_float32_bytes_pass_through_unchanged(pixels: np.ndarray) -> None:
    np.testing.assert_array_equal(pixels_from_base64(b64(pixels.tobytes()), dtype="float32"), pixels)
    np.testing.assert_array_equal(pixels_from_base64(npy(pixels.astype(np.float64)), "npy"), pixels)
    np.testing.assert_array_equal(pixels_from_rows(pixels.tolist()), pixels)


@settings(max_examples=30)
@given(images=IMAGES, activation=st.sampled_from([None, "softmax", "sigmoid"]))
def test_predict_bytes_and_predict_give_equal_probabilities(
    predictor: Predictor, images: np.ndarray, activation: str | None
) -> None:
    as_json = PredictRequest.model_validate_json(
        json.dumps({"images": (images / 255).tolist(), "activation": activation})
    )
    as_bytes = PredictBytesRequest.model_validate({"data": b64(images.tobytes()), "activation": activation})
    answers = [predictor.respond(r.pixels, r.activation) for r in (as_json, as_bytes)]
    assert answers[0].activation == answers[1].activation
    assert [p.label for p in answers[0].predictions] == [p.label for p in answers[1].predictions]
    for a, b in zip(answers[0].predictions, answers[1].predictions, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": "!!!"}, "data: not valid base64"),
        ({"data": b64(b"")}, "data: 0 bytes is not a whole number of 784-byte uint8 images"),
        ({"data": b64(b"\0" * 700)}, "data: 700 bytes is not a whole number of 784-byte uint8 images"),
        ({"data": b64(b"\0" * 784), "dtype": "float32"}, "data: 784 bytes is not a whole number of 3136-byte float32"),
        ({"data": b64(b"hello"), "format": "npy"}, r"data: not a readable \.npy file"),
        ({"data": npy(np.zeros((1, 784), np.int16)), "format": "npy"}, "data: dtype int16 is not supported"),
        ({"data": npy(np.zeros((2, 783), np.uint8)), "format": "npy"}, r"data: expected shape \(N, 784\)"),
        ({"data": b64(np.full(784, 1.5, np.float32).tobytes()), "dtype": "float32"}, r"data: values must be in"),
        ({"data": b64(np.zeros((3, 784), np.uint8).tobytes()), "max_rows": 2}, "data: 3 images in one request; the"),
    ],
)
def test_bad_bytes_are_refused_naming_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=f"^{message}"):
        pixels_from_base64(**kwargs)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([[0.0] * 784, [0.0] * 783], "images: every image must have exactly 784 values"),
        ([[0.0] * 783], r"images: expected shape \(N, 784\)"),
        ([], "images: no images: send at least one$"),
        ([[0.0] * 784] * 3, "images: 3 images in one request; the limit is 2"),
        ([[0.0] * 783 + [1.0001]], r"images: values must be in \[0, 1\]"),
    ],
)
def test_bad_rows_are_refused_naming_the_problem(images: list, message: str) -> None:
    with pytest.raises(InputError, match=f"^{message}"):
        pixels_from_rows(images, max_rows=2)


# The .npy reader's own branches: each version NumPy writes, both memory orders, each dtype it takes, and the
# messages of what it refuses (survivors of issue 19's mutation run over service/codecs/npy.py).


def npy_file(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_every_npy_version_order_and_dtype_reads_the_same_pixels(
    version: tuple[int, int], order: str, dtype: type
) -> None:
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    array = images if dtype is np.uint8 else (images / 255).astype(dtype)
    array = np.asfortranarray(array) if order == "F" else np.ascontiguousarray(array)
    raw = npy_file(array, version)
    assert raw[6:8] == bytes(version)  # the version asked for is the one written
    np.testing.assert_array_equal(array_from_npy(raw), array.reshape(3, 784))
    expected = images.reshape(3, 784) / np.float32(255) if dtype is np.uint8 else array.reshape(3, 784)
    np.testing.assert_array_equal(pixels_from_base64(b64(raw), "npy"), expected.astype(np.float32))


def test_an_unknown_npy_version_is_refused_naming_it() -> None:
    raw = bytearray(npy_file(np.zeros((1, 784), np.uint8), (1, 0)))
    raw[6:8] = bytes((4, 0))
    with pytest.raises(InputError, match=r"^data: not a readable \.npy file \(unsupported \.npy version \(4, 0\)\)$"):
        array_from_npy(bytes(raw))


def test_an_npy_header_over_1024_bytes_is_refused_before_it_is_parsed() -> None:
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 784), }".ljust(2047) + "\n"
    raw = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(784)
    message = r"^data: not a readable \.npy file \(Header info length \(2048\) is large and may not be safe to load"
    with pytest.raises(InputError, match=message + r" securely\.\)$"):
        array_from_npy(raw)


def test_an_npy_header_that_is_no_array_is_refused_with_numpys_whole_first_line() -> None:
    header = "{'descr': 'a. b', 'fortran_order': False, 'shape': (1, 784), }".ljust(63) + "\n"
    raw = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(784)
    message = r"^data: not a readable \.npy file \(descr is not a valid dtype descriptor: 'a\. b'\)$"
    with pytest.raises(InputError, match=message):
        array_from_npy(raw)


def test_a_reader_error_without_a_message_is_named_by_its_type(monkeypatch: pytest.MonkeyPatch) -> None:
    def bare(stream: io.BytesIO) -> None:
        raise EOFError

    monkeypatch.setattr(np.lib.format, "read_magic", bare)
    with pytest.raises(InputError, match=r"^data: not a readable \.npy file \(EOFError\)$"):
        array_from_npy(npy_file(np.zeros((1, 784), np.uint8)))


def test_npy_data_shorter_than_its_header_declares_is_refused_with_both_sizes() -> None:
    raw = npy_file(np.zeros((2, 784), np.float32))[:-784]
    with pytest.raises(InputError, match=r"^data: \.npy data is 5488 bytes; its header declares 6272$"):
        array_from_npy(raw)
