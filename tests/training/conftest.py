from __future__ import annotations

from pathlib import Path

import pytest

from training.data import DataConfig, MNISTSplits, load_mnist


@pytest.fixture(scope="session")
def small_mnist(mnist_root: Path) -> MNISTSplits:
    """3,000 training images, the usual 5,000 validation and 10,000 test images, on the CPU."""
    return load_mnist(DataConfig(root=str(mnist_root), train_subset=3_000, download=False))
