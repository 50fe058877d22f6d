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
    assert (src / "service" / "app.py").exists()
    # every module of the service's package, subpackages included (the codecs once went missing from the image)
    shipped = {p.relative_to(src).as_posix() for p in (src / "service").rglob("*.py")}
    assert shipped == {p.relative_to(REPO).as_posix() for p in (REPO / "service").rglob("*.py")}
    assert not (src / "training").exists()


@pytest.fixture(scope="module")
def dockerfile(built_bento: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Dockerfile `bentoml containerize` would build (generated without a Docker daemon), from a working
    folder that holds its temporary build context too, as `make image` runs it (BentoML #5566)."""
    tag, home = built_bento
    work = tmp_path_factory.mktemp("containerize")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true", "TMPDIR": str(work)}
    script = (
        "import sys, bentoml.container as c; "
        "c.get_containerfile(sys.argv[1], output_path=sys.argv[2], enable_buildkit=False)"
    )
    output = work / "Dockerfile"
    subprocess.run([sys.executable, "-c", script, tag, str(output)], cwd=work, env=env, check=True, capture_output=True)
    return output.read_text()


def test_the_image_installs_the_locked_gpu_runtime_and_no_torch(built_bento: tuple[str, Path], dockerfile: str) -> None:
    tag, home = built_bento
    requirements = (home / "bentos" / "mnist" / tag.split(":")[1] / "env/python/requirements.txt").read_text()
    assert "FROM python:3.11-slim AS base-container" in dockerfile
    assert "EXPOSE 3000" in dockerfile
    assert "RUN pip install uv==" in dockerfile  # pinned, not BentoML's unpinned `pip install uv`
    assert "onnxruntime-gpu==1.31.1 \\\n    --hash=sha256:" in requirements  # the lock, with its hashes
    assert "bentoml==1.4.39" in requirements
    assert "torch" not in requirements


def test_the_final_stage_holds_no_build_step_and_runs_as_a_user(dockerfile: str) -> None:
    final = dockerfile[dockerfile.index("FROM python:3.11-slim AS runtime") :]
    assert "apt-get install" not in dockerfile  # no build tools in any stage: every dependency is a wheel
    assert "pip install" not in final
    assert "install.sh" not in final
    copies = [line for line in final.splitlines() if line.startswith("COPY")]
    assert all("--from=base-container --chown=root:root" in line for line in copies), copies
    assert [line.split()[1] for line in final.splitlines() if line.startswith("USER ")][-1] == "bentoml"
