from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from service.artifact import ModelMetadata
from tests.conftest import MODELS_DIR
from training import export as export_module
from training.data import DataConfig, MNISTSplits, load_test_split
from training.errors import ConfigError
from training.export import (
    ExportConfig,
    ParityError,
    build_parser,
    check_parity,
    default_model_name,
    export,
    labels_for,
    load_checkpoint,
    refuse_unfit_run,
)
from training.export import main as export_main
from training.model import MLP, ModelConfig, probabilities
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


def fixture_export(run: Path, models_dir: Path, mnist_root: Path) -> ExportConfig:
    """The fixture's runs are short (one epoch of a subset), below their presets' floors: forced."""
    return ExportConfig(run=str(run), models_dir=str(models_dir), data_root=str(mnist_root), force=True)


def assert_tensor_specs(meta: dict, outputs: int) -> None:
    """The input and output entries of metadata.json: the contract the service reads."""
    assert meta["input"] == {
        "name": "pixels",
        "dtype": "float32",
        "shape": [-1, 784],
        "range": [0.0, 1.0],
        "layout": "28x28 row-major; white digit (1.0) on a black background (0.0), as in MNIST",
    }
    assert meta["output"] == {"name": "logits", "dtype": "float32", "shape": [-1, outputs], "kind": "logits"}


def parity_of(model_dir: Path, run_dir: Path, mnist_root: Path) -> dict[str, float]:
    """Max |probability difference| of each exported file against the run's eager model on the 10k test images."""
    x = load_test_split(DataConfig(root=str(mnist_root), download=False)).x
    model, _, _ = load_checkpoint(run_dir)
    head = model.config.head
    with torch.no_grad():
        eager = probabilities(model(x), head)
        scripted = probabilities(torch.jit.load(model_dir / "model.pt")(x), head)
    session = ort.InferenceSession(model_dir / "model.onnx", providers=["CPUExecutionProvider"])
    onnx = probabilities(torch.from_numpy(session.run(None, {"pixels": x.numpy()})[0]), head)
    return {"torchscript": float((scripted - eager).abs().max()), "onnxruntime": float((onnx - eager).abs().max())}


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize(("preset", "outputs"), [("mnist-nn", 10), ("pigeon", 1)])
def test_export_writes_onnx_torchscript_and_metadata(
    trained_runs: Path, tmp_path: Path, mnist_root: Path, preset: str, outputs: int
) -> None:
    path = export(fixture_export(trained_runs / preset, tmp_path, mnist_root))
    assert path == tmp_path / preset
    assert sorted(p.name for p in path.iterdir()) == ["metadata.json", "model.onnx", "model.pt"]
    meta = json.loads((path / "metadata.json").read_text())
    for name in ("model.onnx", "model.pt"):
        assert meta["files"][name]["sha256"] == hashlib.sha256((path / name).read_bytes()).hexdigest()
    assert meta["version"] == meta["files"]["model.onnx"]["sha256"][:12]
    assert meta["name"] == preset
    assert meta["head"] == PRESETS[preset].model.head
    assert len(meta["labels"]) == (10 if outputs == 10 else 2)
    assert_tensor_specs(meta, outputs)
    assert meta["labels"] == ([str(d) for d in range(10)] if outputs == 10 else ["not 0/1/2", "0/1/2"])
    assert meta["positive_digits"] == (None if outputs == 10 else [0, 1, 2])
    assert meta["preprocessing"]["normalize"] == {"mean": 0.1307, "std": 0.3081}
    assert ModelMetadata.model_validate(meta).head == PRESETS[preset].model.head  # what the service will accept
    assert meta["parity"]["samples"] == 10_000
    assert meta["parity"]["tolerance"] == 1e-5
    measured = parity_of(path, trained_runs / preset, mnist_root)  # measured here, not taken from the exporter
    for graph in ("torchscript", "onnxruntime"):
        assert measured[graph] <= 1e-5
        assert meta["parity"][f"max_abs_diff_{graph}"] == pytest.approx(measured[graph], abs=1e-7)
        assert meta["parity"][f"argmax_agreement_{graph}"] == 1.0
    summary = json.loads((trained_runs / preset / "summary.json").read_text())
    assert meta["metrics"] == {k: v for k, v in summary.items() if k not in ("parameters", "device")}
    assert 0.5 < meta["metrics"]["test_accuracy"] <= 1.0
    assert set(meta) == {
        "schema_version", "name", "version", "created_at", "git_commit", "description", "commands", "config",
        "libraries", "machine", "onnx", "input", "output", "head", "labels", "positive_digits", "preprocessing",
        "parameters", "metrics", "parity", "files",
    }  # fmt: skip
    assert meta["machine"] == {"platform": platform.platform(), "arch": platform.machine(), "device": "cpu"}
    assert summary["device"] == "cpu"
    width = {"mnist-nn": 50, "pigeon": 30}[preset]
    assert meta["description"] == f"MLP 784-{width}-{outputs}, relu, {meta['head']} head"
    assert meta["parameters"] == summary["parameters"]
    assert meta["commands"] == {"train": ["python", "-m", "training.train", "--preset", preset], "export": None}
    assert meta["config"]["export"]["run"] == str(trained_runs / preset)
    assert meta["config"]["model"] == json.loads((trained_runs / preset / "config.json").read_text())["model"]
    assert meta["libraries"] == {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
    }
    graph = onnx.load(path / "model.onnx")
    assert meta["onnx"] == {"opset": 18, "ir_version": graph.ir_version}
    assert datetime.fromisoformat(meta["created_at"]) <= datetime.now(UTC)
    # dynamic batch axis, and the weights live inside the one file
    session = ort.InferenceSession(path / "model.onnx", providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        (logits,) = session.run(None, {"pixels": np.random.rand(batch, 784).astype(np.float32)})
        assert logits.shape == (batch, outputs)


def shipped(name: str, cfg: ModelConfig) -> tuple[MLP, Path, Path]:
    """A shipped model as an eager model, with its ONNX and TorchScript files: exported once, at release, so the
    parity gate and the metadata can be checked against every mutant without exporting again."""
    folder = MODELS_DIR / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        state = torch.jit.load(folder / "model.pt").state_dict()
    model = MLP(cfg)
    model.load_state_dict(state)
    return model.eval(), folder / "model.onnx", folder / "model.pt"


@pytest.fixture(scope="module")
def shipped_mnist_nn() -> tuple[MLP, Path, Path]:
    return shipped("mnist-nn", ModelConfig(hidden=(50,)))


@pytest.fixture(scope="module")
def shipped_pigeon() -> tuple[MLP, Path, Path]:
    return shipped("pigeon", ModelConfig(hidden=(30,), head="sigmoid"))


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_metadata_is_the_contract_the_service_reads(shipped_mnist_nn, head: str) -> None:
    """build_metadata alone, on a small exported graph: fast enough to run against every mutant."""
    model, onnx_path, _ = shipped_mnist_nn
    cfg = ModelConfig(hidden=(16,), head=head)
    run_config = {
        "model": {"hidden": [16], "head": head},  # the description and head come from the model passed
        "train": {"preset": "x"},
        "data": {"positive_digits": [4, 7]},
        "command": ["python", "-m", "training.train"],
    }
    summary = {"best_epoch": 2, "test_accuracy": 0.97, "parameters": 12_730, "device": "cpu"}
    files = {"model.onnx": {"sha256": "ab" * 32, "bytes": 10}, "model.pt": {"sha256": "cd" * 32, "bytes": 20}}
    export_cfg = ExportConfig(run="runs/x")
    meta = export_module.build_metadata(
        "tiny", MLP(cfg), run_config, summary, {"samples": 1000}, files, export_cfg, ["python", "-m", "e"], onnx_path
    )
    assert ModelMetadata.model_validate(meta).head == head  # what the service will accept
    export_module.validate_metadata(meta)  # and what training checks before writing, from the schema file
    outputs = 10 if head == "softmax" else 1
    assert meta["schema_version"] == 1
    assert (meta["name"], meta["version"]) == ("tiny", "ab" * 6)
    assert meta["description"] == f"MLP 784-16-{outputs}, relu, {head} head"
    assert meta["commands"] == {"train": ["python", "-m", "training.train"], "export": ["python", "-m", "e"]}
    assert meta["config"] == {
        "model": run_config["model"],
        "train": run_config["train"],
        "data": run_config["data"],
        "export": dataclasses.asdict(export_cfg),
    }
    assert_tensor_specs(meta, outputs)
    assert meta["head"] == head
    assert meta["labels"] == ([str(d) for d in range(10)] if head == "softmax" else ["not 4/7", "4/7"])
    assert meta["positive_digits"] == (None if head == "softmax" else [4, 7])
    assert meta["preprocessing"] == {
        "in_graph": True,
        "normalize": {"mean": 0.1307, "std": 0.3081},
        "formula": "(pixels - mean) / std, inside the exported graph",
        "pixel_scale": "uint8 value / 255",
    }
    assert meta["parameters"] == sum(p.numel() for p in MLP(cfg).parameters())
    assert meta["metrics"] == {"best_epoch": 2, "test_accuracy": 0.97}
    assert meta["parity"] == {"samples": 1000}
    assert meta["files"] == files
    assert meta["libraries"] == {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
    }
    assert meta["onnx"] == {"opset": 18, "ir_version": onnx.load(onnx_path).ir_version}
    assert datetime.fromisoformat(meta["created_at"]) <= datetime.now(UTC)
    assert meta["git_commit"]


def test_parity_gate_passes_faithful_exports_and_reports_the_differences(shipped_mnist_nn) -> None:
    model, onnx_path, script_path = shipped_mnist_nn
    x = torch.rand(64, 784, generator=torch.Generator().manual_seed(0))
    report = check_parity(model, onnx_path, script_path, x, 1e-5)
    assert report["samples"] == 64
    assert report["activation"] == "softmax"
    assert 0 <= report["max_abs_diff_onnxruntime"] <= 1e-5
    assert report["argmax_agreement_onnxruntime"] == 1.0
    assert report["argmax_agreement_torchscript"] == 1.0


def nudged(model: MLP, digit: int, amount: float) -> MLP:
    """A copy of `model` whose logit for `digit` is raised by `amount`: what a faulty export would compute."""
    copy = MLP(model.config).eval()
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        copy.head.bias[digit] += amount
    return copy


def test_parity_gate_refuses_a_small_difference_that_keeps_every_argmax(shipped_mnist_nn) -> None:
    model, onnx_path, script_path = shipped_mnist_nn
    x = torch.rand(64, 784, generator=torch.Generator().manual_seed(0))
    faulty = nudged(model, 3, 1e-3)  # one class a little more likely: ~1e-4 in probability
    with torch.no_grad():
        assert torch.equal(faulty(x).argmax(1), model(x).argmax(1)), "the nudge must keep every argmax"
    with pytest.raises(ParityError, match=r"max \|diff\| .*argmax agreement 1\.0") as failure:
        check_parity(faulty, onnx_path, script_path, x, 1e-5)
    assert str(failure.value).startswith("export parity failed (tolerance 1e-05): torchscript: max |diff| ")
    assert "; onnxruntime: max |diff| " in str(failure.value)


def test_parity_gate_refuses_a_changed_argmax_even_within_tolerance(shipped_mnist_nn) -> None:
    model, onnx_path, script_path = shipped_mnist_nn
    x = torch.rand(256, 784, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ParityError, match=r"argmax agreement 0\.\d+"):
        check_parity(nudged(model, 3, 0.3), onnx_path, script_path, x, tolerance=1.0)


def test_labels_put_the_positive_class_second() -> None:
    assert labels_for(ModelConfig(head="sigmoid"), [0, 1, 2]) == ["not 0/1/2", "0/1/2"]
    assert labels_for(ModelConfig(head="sigmoid"), [7]) == ["not 7", "7"]
    assert labels_for(ModelConfig(head="softmax"), [0, 1, 2]) == [str(d) for d in range(10)]


def test_cli_defaults_are_the_documented_gate() -> None:
    cfg = ExportConfig(**vars(build_parser().parse_args(["--run", "runs/x"])))
    assert cfg == ExportConfig(run="runs/x")
    assert (cfg.tolerance, cfg.parity_samples, cfg.opset, cfg.models_dir) == (1e-5, 10_000, 18, "models")


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
        export(fixture_export(trained_runs / "mnist-nn", tmp_path, mnist_root))
    assert list(tmp_path.iterdir()) == []


def test_crash_during_export_leaves_models_untouched(
    trained_runs: Path, tmp_path: Path, mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = fixture_export(trained_runs / "mnist-nn", tmp_path, mnist_root)
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


@pytest.mark.parametrize(
    ("train", "accuracy", "message"),
    [
        ({"preset": "mnist-nn", "dry_run": True}, 0.179, "a dry run"),
        ({"preset": "fast", "dry_run": False}, 0.9849, "0.9849 is below the fast preset's floor of 0.985"),
        ({"preset": "pigeon"}, 0.5, "below the pigeon preset's floor"),
    ],
)
def test_a_dry_run_or_a_run_below_its_floor_is_refused(train: dict, accuracy: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        refuse_unfit_run({"train": train}, {"test_accuracy": accuracy})
    assert "--force" in str(refused.value)


@pytest.mark.parametrize(
    ("train", "accuracy"),
    [({"preset": "fast", "dry_run": False}, 0.985), ({"preset": "mnist-nn"}, 0.97), ({"preset": "custom"}, 0.1)],
)
def test_a_run_at_its_floor_or_of_no_preset_is_exported(train: dict, accuracy: float) -> None:
    refuse_unfit_run({"train": train}, {"test_accuracy": accuracy})


def test_a_dry_run_is_named_apart_from_the_real_run() -> None:
    dry, real = {"preset": "mnist-nn", "dry_run": True, "run_name": None}, {"preset": "mnist-nn", "dry_run": False}
    assert default_model_name({"train": dry}) == "mnist-nn-dry-run"
    assert default_model_name({"train": real}) == "mnist-nn"
    assert default_model_name({"train": {"preset": "mnist-nn", "run_name": "mine"}}) == "mine"


def test_the_cli_refuses_an_unfit_run_and_writes_nothing(
    trained_runs: Path, tmp_path: Path, mnist_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "runs" / "pigeon"
    shutil.copytree(trained_runs / "pigeon", run)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "test_accuracy": 0.5}))
    models = tmp_path / "models"
    argv = ["--run", str(run), "--models-dir", str(models), "--data-root", str(mnist_root)]
    assert export_main(argv) == 2
    assert "test accuracy 0.5000 is below the pigeon preset's floor of 0.97" in capsys.readouterr().err
    assert not models.exists() or list(models.iterdir()) == []


@pytest.mark.slow  # a subprocess and the BentoML CLI: 12 s
def test_export_cli_can_register_in_the_bentoml_model_store(
    trained_runs: Path, tmp_path: Path, mnist_root: Path
) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    command = [sys.executable, "-m", "training.export", "--run", str(trained_runs / "pigeon")]
    command += ["--models-dir", str(tmp_path / "models"), "--data-root", str(mnist_root), "--bentoml", "--force"]
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


def test_parity_gate_on_the_one_output_head_compares_decisions_at_one_half(shipped_pigeon) -> None:
    model, onnx_path, script_path = shipped_pigeon
    x = torch.rand(512, 784, generator=torch.Generator().manual_seed(0))
    report = check_parity(model, onnx_path, script_path, x, 1e-5)
    assert report["activation"] == "sigmoid"
    assert report["argmax_agreement_onnxruntime"] == 1.0
    with torch.no_grad():
        logits = model(x)[:, 0]
    nearest = float(logits[logits.abs().argmin()])  # the row closest to p = 0.5
    with pytest.raises(ParityError, match=r"argmax agreement 0\.\d+"):  # within tolerance, a decision changed
        check_parity(nudged(model, 0, -1.5 * nearest), onnx_path, script_path, x, tolerance=1.0)


def test_an_export_the_service_would_refuse_is_stopped_before_writing() -> None:
    meta = json.loads((MODELS_DIR / "pigeon" / "metadata.json").read_text())
    export_module.validate_metadata(meta)
    meta["head"] = "softmax"  # one output under a ten-class head
    with pytest.raises(
        export_module.MetadataContractError, match=r"serving contract .*: labels: \['not 0/1/2', '0/1/2'\] is too short"
    ):
        export_module.validate_metadata(meta)
