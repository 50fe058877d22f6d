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
    (bento_dir,) = (home / "bentos" / "mnist").glob("[!l]*")  # the one build, not the `latest` pointer file
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


def test_containerfile_installs_gpu_runtime_and_no_torch(built_bento: tuple[str, Path], tmp_path: Path) -> None:
    tag, home = built_bento
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    script = (
        "import sys, bentoml.container as c; "
        "c.get_containerfile(sys.argv[1], output_path=sys.argv[2], enable_buildkit=False)"
    )
    output = tmp_path / "Dockerfile"
    subprocess.run([sys.executable, "-c", script, tag, str(output)], env=env, check=True, capture_output=True)
    dockerfile = output.read_text()
    requirements = (home / "bentos" / "mnist" / tag.split(":")[1] / "env/python/requirements.txt").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "EXPOSE 3000" in dockerfile
    assert "pip install -r" in dockerfile
    assert "onnxruntime-gpu[cuda,cudnn]==1.31.1" in requirements
    assert "bentoml==1.4.39" in requirements
    assert "torch" not in requirements
