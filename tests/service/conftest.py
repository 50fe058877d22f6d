"""The served models in-process, and images with known labels that need no MNIST download."""

from __future__ import annotations

import numpy as np
import pytest

from loadtests.payloads import load_sample
from service.predictor import Predictor
from service.runtime import ModelRuntime, RuntimeConfig
from tests.conftest import MODELS_DIR


def load_runtime(model: str = "default", **overrides) -> ModelRuntime:  # noqa: ANN003 - RuntimeConfig fields
    return ModelRuntime(RuntimeConfig(models_dir=str(MODELS_DIR), model=model, **overrides))


@pytest.fixture(scope="session")
def default_runtime() -> ModelRuntime:
    return load_runtime("default")


@pytest.fixture(scope="session")
def pigeon_runtime() -> ModelRuntime:
    return load_runtime("pigeon")


@pytest.fixture(scope="session", params=["default", "pigeon"])
def predictor(request: pytest.FixtureRequest) -> Predictor:
    """The predictor core over each head: softmax (10 classes) and sigmoid (one output)."""
    return Predictor(request.getfixturevalue(f"{request.param}_runtime"))


@pytest.fixture(scope="session")
def sample() -> tuple[np.ndarray, np.ndarray]:
    """512 MNIST test images as uint8 (N, 784) and their digits, shipped with the load tests."""
    return load_sample()
