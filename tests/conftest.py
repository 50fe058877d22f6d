"""Shared fixtures: where MNIST is, and small tensors of it loaded once per session."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO / "models"


def find_mnist_root() -> Path | None:
    """$MNIST_ROOT, then ../shared/data (CI and the dev machines), then data/."""
    for candidate in (os.environ.get("MNIST_ROOT"), REPO.parent / "shared" / "data", REPO / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists():
            return Path(candidate)
    return None


MISSING_MNIST = "MNIST not found: set MNIST_ROOT to a folder holding MNIST/raw/"


def require_mnist(root: Path | None, ci: bool) -> Path:
    """The MNIST root, or a skip; in CI a failure, since CI always has ../shared/data and a skip would hide it."""
    if root is None:
        if ci:
            pytest.fail(MISSING_MNIST)
        pytest.skip(MISSING_MNIST)
    return root


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    return require_mnist(find_mnist_root(), ci=bool(os.environ.get("CI")))


# No per-example deadline: the machines are shared and a slow example is not a wrong one. In CI the examples
# are derived from each test's name (derandomize), so a red CI is reproducible and a green one does not flake.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)


def pytest_configure(config: pytest.Config) -> None:
    settings.load_profile("ci" if os.environ.get("CI") else "dev")
    # BentoML's /metrics reads Prometheus' multiprocess directory, which `bentoml serve` sets for its workers;
    # the in-process app (tests/service/test_app.py) needs one too, set before prometheus_client is imported.
    # It lives as long as the process: mutmut runs pytest several times in one process.
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        directory = tempfile.mkdtemp(prefix="mnist-prometheus-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        atexit.register(shutil.rmtree, directory, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say plainly how many tests did not run for want of MNIST or a GPU, rather than leave it in the skips."""
    reasons = [str(report.longrepr[-1]) for report in terminalreporter.stats.get("skipped", [])]
    for what, needle in (("MNIST", "MNIST not found"), ("a CUDA GPU", "no CUDA")):
        count = sum(needle in reason for reason in reasons)
        if count:
            terminalreporter.write_line(f"{count} tests skipped: they need {what}", yellow=True, bold=True)
