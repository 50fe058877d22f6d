"""`bentoml build` works offline and the generated Dockerfile is what operators will containerize."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built_bento(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    home = tmp_path_factory.mktemp("bentoml-home")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    bentoml = str(Path(sys.executable).parent / "bentoml")
    subprocess.run([bentoml, "build", "--output", "tag"], cwd=REPO, env=env, check=True, capture_output=True)
    # the one build, not the `latest` pointer file (a build's tag may start with "l" too: l6vglzxhi6kuuax4)
    (bento_dir,) = [p for p in (home / "bentos" / "mnist").iterdir() if p.name != "latest"]
    return f"mnist:{bento_dir.name}", home


def test_bento_carries_the_service_and_onnx_models_only(built_bento: tuple[str, Path]) -> None:
    tag, home = built_bento
    src = home / "bentos" / "mnist" / tag.split(":")[1] / "src"
    for model in ("default", "pigeon"):
        assert (src / "models" / model / "model.onnx").exists()
        assert (src / "models" / model / "metadata.json").exists()
    assert not list(src.rglob("*.pt")), "TorchScript files are not served and stay out of the image"
    assert (src / "service" / "service.py").exists()
    assert not (src / "training").exists()


@pytest.fixture(scope="module")
def dockerfile(built_bento: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Dockerfile `bentoml containerize` would build (generated without a Docker daemon)."""
    tag, home = built_bento
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    script = (
        "import sys, bentoml.container as c; "
        "c.get_containerfile(sys.argv[1], output_path=sys.argv[2], enable_buildkit=False)"
    )
    output = tmp_path_factory.mktemp("docker") / "Dockerfile"
    subprocess.run([sys.executable, "-c", script, tag, str(output)], env=env, check=True, capture_output=True)
    return output.read_text()


def test_containerfile_installs_gpu_runtime_and_no_torch(built_bento: tuple[str, Path], dockerfile: str) -> None:
    tag, home = built_bento
    requirements = (home / "bentos" / "mnist" / tag.split(":")[1] / "env/python/requirements.txt").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "EXPOSE 3000" in dockerfile
    assert "pip install -r" in dockerfile
    assert "onnxruntime-gpu[cuda,cudnn]==1.31.1" in requirements
    assert "bentoml==1.4.39" in requirements
    assert "torch" not in requirements


def test_containerfile_runs_as_a_user_without_build_tools(built_bento: tuple[str, Path], dockerfile: str) -> None:
    tag, home = built_bento
    steps = dockerfile.splitlines()
    installs = max(i for i, line in enumerate(steps) if "pip install -r" in line)  # the Python packages
    (setup,) = [i for i, line in enumerate(steps) if line.startswith("RUN ") and "env/docker/script__" in line]
    assert setup > installs, "the build tools must go after the packages are installed"
    (script,) = (home / "bentos" / "mnist" / tag.split(":")[1] / "env" / "docker").glob("script__*")
    assert "apt-get purge -y --auto-remove build-essential gnupg2 git" in script.read_text()
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users[-1] == "bentoml", "the server must not run as root"
