"""The served models in-process, and images with known labels that need no MNIST download."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from starlette.testclient import TestClient

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


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    """The whole app in-process (BentoML's middlewares, the guard, the doors, the routes), built once."""
    from prometheus_client import REGISTRY

    from service.service import MNISTService

    known = set(REGISTRY._collector_to_names)  # noqa: SLF001 - prometheus_client has no public list of collectors
    try:
        with TestClient(MNISTService.to_asgi()) as c:
            yield c
    finally:
        # The app registers BentoML's and the service's metrics in the process-wide registry, once per process
        # in production; forget them so that the app can be built again here (mutmut reruns the suite in-process).
        for collector in set(REGISTRY._collector_to_names) - known:  # noqa: SLF001
            REGISTRY.unregister(collector)


@pytest.fixture(autouse=True)
def every_refusal_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process's refusal log without its rate limit, so that a test sees each of its requests' lines
    whatever the tests before it refused (the rate limit itself is tested on its own instance)."""
    from service import errors

    monkeypatch.setattr(errors.refusals, "burst", 10**9)
