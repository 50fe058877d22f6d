"""The input contract: (N, 784) or (N, 28, 28) finite numbers in [0, 1]; everything else is refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from service.codecs.pixels import validate_pixels
from service.errors import InputError

IN_RANGE = st.floats(0, 1, width=32)
ROWS = st.integers(1, 5)
VALID = st.one_of(
    arrays(st.sampled_from([np.float32, np.float64]), st.tuples(ROWS, st.just(784)), elements=IN_RANGE),
    arrays(st.sampled_from([np.float32, np.float64]), st.tuples(ROWS, st.just(28), st.just(28)), elements=IN_RANGE),
)
OUT_OF_RANGE = st.one_of(
    st.floats(max_value=0, exclude_max=True), st.floats(min_value=1, exclude_min=True, allow_infinity=False)
)


@given(VALID)
def test_every_array_in_the_contract_is_accepted_unchanged(pixels: np.ndarray) -> None:
    out = validate_pixels(pixels, max_rows=5)
    assert out.dtype == np.float32
    assert out.shape == (len(pixels), 784)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, pixels.reshape(len(pixels), 784).astype(np.float32))


@given(arrays(np.float32, array_shapes(min_dims=1, max_dims=4, max_side=30), elements=IN_RANGE))
def test_every_other_shape_is_refused(pixels: np.ndarray) -> None:
    assume(
        not (pixels.ndim == 2 and pixels.shape[1] == 784) and not (pixels.ndim == 3 and pixels.shape[1:] == (28, 28))
    )
    with pytest.raises(InputError, match=r"^images: (expected shape \(N, 784\) or \(N, 28, 28\), got|no images)"):
        validate_pixels(pixels)


def in_range(rows: int, seed: int, dtype: type = np.float32) -> np.ndarray:
    """Random valid pixels: Hypothesis draws the shape and seed, NumPy the 784 x rows values (much faster)."""
    return np.random.default_rng(seed).random((rows, 784)).astype(dtype)


SEED = st.integers(0, 2**32 - 1)
WHERE = st.tuples(st.integers(0, 4), st.integers(0, 783))


@given(rows=ROWS, seed=SEED, where=WHERE, bad=OUT_OF_RANGE)
def test_one_value_out_of_range_is_refused(rows: int, seed: int, where: tuple[int, int], bad: float) -> None:
    pixels = in_range(rows, seed)
    row, col = where[0] % len(pixels), where[1]
    with np.errstate(over="ignore"):  # past float32's range a value is infinite, reported as such (next test)
        as_float32 = np.float32(bad)
    assume(np.isfinite(as_float32) and (as_float32 < 0 or as_float32 > 1))  # what the model would see
    pixels[row, col] = bad
    with pytest.raises(InputError, match=r"^data: values must be in \[0, 1\] \(pixel / 255\); got min"):
        validate_pixels(pixels, "data")


@given(rows=ROWS, seed=SEED, where=WHERE, bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_nan_or_infinity_is_refused_naming_its_row(rows: int, seed: int, where: tuple[int, int], bad: float) -> None:
    pixels = in_range(rows, seed, np.float64)
    row = where[0] % len(pixels)
    pixels[row, where[1]] = bad
    with pytest.raises(InputError, match=rf"^images\[{row}\]: NaN or infinite value$"):
        validate_pixels(pixels)


@given(rows=st.integers(1, 40), limit=st.integers(1, 40))
def test_the_row_limit_is_exact(rows: int, limit: int) -> None:
    pixels = np.zeros((rows, 784), np.float32)
    if rows <= limit:
        assert validate_pixels(pixels, max_rows=limit).shape == (rows, 784)
    else:
        with pytest.raises(InputError, match=f"^images: {rows} images in one request; the limit is {limit}$"):
            validate_pixels(pixels, max_rows=limit)


@pytest.mark.parametrize("pixels", [np.array(0.5), np.array([["a"] * 784]), np.zeros((1, 784), dtype=bool)])
def test_what_is_not_an_array_of_numbers_is_refused(pixels: np.ndarray) -> None:
    with pytest.raises(InputError, match="^images: "):
        validate_pixels(pixels)
