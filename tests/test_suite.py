"""The suite's own rules: a test that needs MNIST fails in CI when the files are missing, and skips elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_mnist


def test_missing_mnist_fails_in_ci() -> None:
    with pytest.raises(pytest.fail.Exception, match="MNIST not found: set MNIST_ROOT"):
        require_mnist(None, ci=True)


def test_missing_mnist_skips_outside_ci() -> None:
    with pytest.raises(pytest.skip.Exception, match="MNIST not found: set MNIST_ROOT"):
        require_mnist(None, ci=False)


def test_present_mnist_is_used() -> None:
    assert require_mnist(Path("/data"), ci=True) == Path("/data")
