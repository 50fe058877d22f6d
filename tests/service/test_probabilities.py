"""Probabilities from logits, for any finite logits the model could emit, extreme ones included."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service.heads import sigmoid, softmax
from service.runtime import ModelRuntime

FINITE = st.floats(width=32, allow_nan=False, allow_infinity=False)  # up to +-3.4e38
LOGITS = arrays(np.float32, st.tuples(st.integers(1, 8), st.integers(1, 12)), elements=FINITE)


@given(LOGITS)
def test_softmax_is_finite_and_sums_to_one(logits: np.ndarray) -> None:
    with np.errstate(over="ignore"):  # logits - max may overflow to -inf: exp(-inf) is 0, as it should be
        p = softmax(logits.copy())
    assert np.isfinite(p).all()
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert_most_probable(p, logits.argmax(axis=1))


def assert_most_probable(probabilities: np.ndarray, labels: np.ndarray) -> None:
    """Each label's probability is its row's largest (ties allowed: probabilities round, logits decide)."""
    np.testing.assert_array_equal(probabilities[np.arange(len(labels)), labels], probabilities.max(axis=1))


@given(arrays(np.float32, st.tuples(st.integers(1, 8), st.integers(2, 12)), elements=st.floats(-30, 30, width=32)))
def test_softmax_matches_the_definition_where_it_can_be_computed_directly(logits: np.ndarray) -> None:
    exp = np.exp(logits.astype(np.float64))
    np.testing.assert_allclose(softmax(logits.copy()), exp / exp.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_softmax_subtracts_the_max_so_large_logits_do_not_overflow() -> None:
    p = softmax(np.array([[1000.0, 999.0, -1000.0]], dtype=np.float32))
    np.testing.assert_allclose(p, [[1 / (1 + np.exp(-1)), 1 / (1 + np.e), 0.0]], rtol=1e-6)


@given(LOGITS)
def test_sigmoid_is_a_finite_probability_for_any_logit(logits: np.ndarray) -> None:
    p = sigmoid(logits)
    assert np.isfinite(p).all()
    assert ((p >= 0) & (p <= 1)).all()
    expected = 0.5 * (1 + np.tanh(0.5 * logits.astype(np.float64)))  # 1 / (1 + exp(-x)) without overflow
    np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-7)


@given(arrays(np.float32, st.tuples(st.integers(1, 8), st.just(10)), elements=FINITE))
def test_ten_class_runtime_probabilities(default_runtime: ModelRuntime, logits: np.ndarray) -> None:
    with np.errstate(over="ignore"):
        soft = default_runtime.probabilities(logits.copy(), "softmax")
    np.testing.assert_allclose(soft.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(soft.label_indices, logits.argmax(axis=1))
    assert_most_probable(soft.probabilities, soft.label_indices)
    sig = default_runtime.probabilities(logits.copy(), "sigmoid")
    np.testing.assert_array_equal(sig.probabilities, sigmoid(logits))
    np.testing.assert_array_equal(sig.label_indices, logits.argmax(axis=1))
    assert_most_probable(sig.probabilities, sig.label_indices)


def test_sigmoid_labels_follow_the_logits_where_probabilities_saturate(default_runtime: ModelRuntime) -> None:
    logits = np.array([[20.0, 25.0, *[-5.0] * 8]], dtype=np.float32)  # sigmoid: 1.0 and 1.0
    assert default_runtime.probabilities(logits.copy(), "sigmoid").label_indices.tolist() == [1]


@given(arrays(np.float32, st.tuples(st.integers(1, 8), st.just(1)), elements=FINITE))
def test_one_output_runtime_probabilities(pigeon_runtime: ModelRuntime, logits: np.ndarray) -> None:
    p = sigmoid(logits)
    sig = pigeon_runtime.probabilities(logits, "sigmoid")
    np.testing.assert_array_equal(sig.probabilities, p)
    soft = pigeon_runtime.probabilities(logits, "softmax")
    np.testing.assert_array_equal(soft.probabilities, np.concatenate([1 - p, p], axis=1))  # the two-class form
    np.testing.assert_array_equal(sig.label_indices, (logits[:, 0] > 0).astype(np.int64))
    np.testing.assert_array_equal(soft.label_indices, sig.label_indices)
