"""Shared fixtures: where MNIST is, and small tensors of it loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO / "models"


def find_mnist_root() -> Path | None:
    """$MNIST_ROOT, then ../shared/data (CI and the dev machines), then data/."""
    for candidate in (os.environ.get("MNIST_ROOT"), REPO.parent / "shared" / "data", REPO / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    root = find_mnist_root()
    if root is None:
        message = "MNIST not found: set MNIST_ROOT to a folder holding MNIST/raw/"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI always has ../shared/data: a skip there would hide every data test
        pytest.skip(message)
    return root
