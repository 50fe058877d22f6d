"""The served models in-process, and images with known labels that need no MNIST download."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
from starlette.testclient import TestClient

from loadtests.payloads import load_sample
from service.predictor import Predictor
from service.runtime import ModelRuntime, RuntimeConfig
from service.settings import Batching, Limits, ServiceSettings
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


def app_settings(**changes: object) -> ServiceSettings:
    """The service's defaults over the shipped models, with `changes` (ServiceSettings fields) on top."""
    return dataclasses.replace(
        ServiceSettings(RuntimeConfig(models_dir=str(MODELS_DIR)), Batching(), Limits()), **changes
    )


@contextlib.contextmanager
def serve_in_process(settings: ServiceSettings) -> Iterator[TestClient]:
    """The whole app in-process (BentoML's middlewares, the front, the routes), built from `settings`
    by `build_service`, as `bentoml serve` builds it from the environment."""
    from prometheus_client import REGISTRY

    from service.app import build_service

    # An app registers BentoML's and the service's metrics in the process-wide registry, once per process in
    # production. Here several apps are built in one process (and mutmut reruns the suite in-process): the
    # metrics of an app still open are set aside while this one runs, and this one's are forgotten after it.
    registered = set(REGISTRY._collector_to_names)  # noqa: SLF001 - prometheus_client has no public list
    baseline = _METRICS_BASELINE.setdefault("collectors", registered)
    set_aside = registered - baseline
    for collector in set_aside:
        REGISTRY.unregister(collector)
    try:
        with TestClient(build_service(settings).to_asgi()) as c:
            yield c
    finally:
        for collector in set(REGISTRY._collector_to_names) - baseline:  # noqa: SLF001
            REGISTRY.unregister(collector)
        for collector in set_aside:
            REGISTRY.register(collector)


_METRICS_BASELINE: dict[str, set] = {}  # the registry's collectors before the first app was built


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    """The app with the default settings, built once."""
    with serve_in_process(app_settings()) as c:
        yield c


@pytest.fixture(autouse=True)
def every_refusal_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process's refusal log without its rate limit, so that a test sees each of its requests' lines
    whatever the tests before it refused (the rate limit itself is tested on its own instance)."""
    from service import errors

    monkeypatch.setattr(errors.refusals, "burst", 10**9)
