from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from training import export as export_module
from training.data import DataConfig, MNISTSplits
from training.errors import ConfigError
from training.export import ExportConfig, ParityError, export
from training.presets import PRESETS
from training.train import TrainConfig, train

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory: pytest.TempPathFactory, small_mnist: MNISTSplits) -> Path:
    out = tmp_path_factory.mktemp("runs")
    for preset in ("mnist-nn", "pigeon"):
        cfg = TrainConfig(preset=preset, epochs=1, device="cpu", out_dir=str(out))
        command = ["python", "-m", "training.train", "--preset", preset]
        train(PRESETS[preset].model, cfg, DataConfig(), data=small_mnist, command=command)
    return out


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize(("preset", "outputs"), [("mnist-nn", 10), ("pigeon", 1)])
def test_export_writes_onnx_torchscript_and_metadata(
    trained_runs: Path, tmp_path: Path, mnist_root: Path, preset: str, outputs: int
) -> None:
    path = export(ExportConfig(run=str(trained_runs / preset), models_dir=str(tmp_path), data_root=str(mnist_root)))
    assert path == tmp_path / preset
    assert sorted(p.name for p in path.iterdir()) == ["metadata.json", "model.onnx", "model.pt"]
    meta = json.loads((path / "metadata.json").read_text())
    for name in ("model.onnx", "model.pt"):
        assert meta["files"][name]["sha256"] == hashlib.sha256((path / name).read_bytes()).hexdigest()
    assert meta["version"] == meta["files"]["model.onnx"]["sha256"][:12]
    assert meta["name"] == preset
    assert meta["head"] == PRESETS[preset].model.head
    assert len(meta["labels"]) == (10 if outputs == 10 else 2)
    assert meta["input"] == {
        "name": "pixels",
        "dtype": "float32",
        "shape": [-1, 784],
        "range": [0.0, 1.0],
        "layout": meta["input"]["layout"],
    }
    assert meta["output"]["shape"] == [-1, outputs]
    assert meta["parity"]["samples"] == 10_000
    for graph in ("torchscript", "onnxruntime"):
        assert meta["parity"][f"max_abs_diff_{graph}"] <= 1e-5
        assert meta["parity"][f"argmax_agreement_{graph}"] == 1.0
    assert 0.5 < meta["metrics"]["test_accuracy"] <= 1.0
    assert meta["commands"]["train"] == ["python", "-m", "training.train", "--preset", preset]
    assert meta["libraries"]["onnxruntime"] == ort.__version__
    assert meta["onnx"]["opset"] == 18
    # dynamic batch axis, and the weights live inside the one file
    session = ort.InferenceSession(path / "model.onnx", providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        (logits,) = session.run(None, {"pixels": np.random.rand(batch, 784).astype(np.float32)})
        assert logits.shape == (batch, outputs)


def test_parity_failure_writes_nothing(
    trained_runs: Path, tmp_path: Path, mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_export_onnx = export_module.export_onnx

    def export_perturbed(model, path, opset):
        import torch

        with torch.no_grad():
            model.head.bias[0] += 0.5  # one class only: softmax ignores a shift of all logits
        real_export_onnx(model, path, opset)
        with torch.no_grad():
            model.head.bias[0] -= 0.5

    monkeypatch.setattr(export_module, "export_onnx", export_perturbed)
    with pytest.raises(ParityError, match="onnxruntime: max"):
        export(ExportConfig(run=str(trained_runs / "mnist-nn"), models_dir=str(tmp_path), data_root=str(mnist_root)))
    assert list(tmp_path.iterdir()) == []


def test_crash_during_export_leaves_models_untouched(
    trained_runs: Path, tmp_path: Path, mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = ExportConfig(run=str(trained_runs / "mnist-nn"), models_dir=str(tmp_path), data_root=str(mnist_root))
    export(cfg)
    before = snapshot(tmp_path)

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash while writing metadata")

    monkeypatch.setattr(export_module, "build_metadata", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        export(cfg)
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist-nn"]


def test_export_of_an_unfinished_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has no best.pt and summary.json"):
        export(ExportConfig(run=str(tmp_path / "nope"), models_dir=str(tmp_path)))


def test_export_cli_can_register_in_the_bentoml_model_store(
    trained_runs: Path, tmp_path: Path, mnist_root: Path
) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    command = [sys.executable, "-m", "training.export", "--run", str(trained_runs / "pigeon")]
    command += ["--models-dir", str(tmp_path / "models"), "--data-root", str(mnist_root), "--bentoml"]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    meta = json.loads((tmp_path / "models" / "pigeon" / "metadata.json").read_text())
    listing = subprocess.run(
        [str(Path(sys.executable).parent / "bentoml"), "models", "list", "-o", "json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    tags = [entry["tag"] for entry in json.loads(listing)]
    assert tags == [f"mnist-pigeon:{meta['version']}"]
    stored = tmp_path / "bentoml" / "models" / "mnist-pigeon" / meta["version"] / "model.onnx"
    assert stored.read_bytes() == (tmp_path / "models" / "pigeon" / "model.onnx").read_bytes()
