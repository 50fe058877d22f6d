"""Export a run's best checkpoint to `models/<name>/`: ONNX, TorchScript and metadata.json, behind a parity gate.

    python -m training.export --run runs/fast                     # -> models/fast/
    python -m training.export --run runs/distorted --name default # -> models/default/, the served default
    python -m training.export --run runs/fast --bentoml           # also register in the BentoML model store

The gate: eager PyTorch vs TorchScript vs ONNX Runtime (CPU) on the MNIST test images; max absolute
difference of probabilities <= 1e-5 and identical argmax, or the export fails and writes nothing.
Files are written into `models/.tmp-<name>-*` and renamed into place, so the service never sees half a model.
An export replaces `models/<name>/`, the shipped model of that name by default. A dry run, or a run below its
preset's accuracy floor, is refused unless `--force` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from service.artifact import sha256_of  # the contract's hash: the service checks what this writes

from .atomic import atomic_write_json, current_umask
from .data import DataConfig, load_test_split
from .errors import ConfigError, require
from .model import MLP, MNIST_MEAN, MNIST_STD, NUM_PIXELS, ModelConfig, count_parameters, probabilities
from .presets import PRESETS, default_run_name
from .provenance import git_commit

log = logging.getLogger("training.export")

METADATA_SCHEMA_VERSION = 1
METADATA_SCHEMA = Path(__file__).resolve().parents[1] / "models" / "metadata.schema.json"
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class ExportConfig:
    run: str  # run folder holding best.pt and summary.json
    name: str | None = None  # models/<name>/; default: the run's name (its preset's, or <preset>-dry-run)
    models_dir: str = "models"
    opset: int = 18
    parity_samples: int = 10_000  # test images compared across eager / TorchScript / ONNX Runtime
    tolerance: float = 1e-5  # max |probability difference|
    data_root: str | None = None  # MNIST for the parity images; default $MNIST_ROOT or data/
    bentoml: bool = False  # also save into the local BentoML model store
    force: bool = False  # export a dry run, or a run below its preset's accuracy floor, anyway

    def __post_init__(self) -> None:
        require(self.parity_samples >= 1_000, "parity_samples", "at least 1000 test images", self.parity_samples)
        require(self.tolerance > 0, "tolerance", "a positive number", self.tolerance)
        require(7 <= self.opset <= 23, "opset", "7..23 (ONNX Runtime 1.31 supports up to 23)", self.opset)


class ParityError(RuntimeError):
    """An exported graph disagrees with the eager model beyond tolerance."""


def load_checkpoint(run_dir: Path) -> tuple[MLP, dict[str, Any], dict[str, Any]]:
    """The run's best model (eval mode), its config.json contents and summary.json."""
    best, summary = run_dir / "best.pt", run_dir / "summary.json"
    if not best.exists() or not summary.exists():
        raise ConfigError(f"run: {run_dir} has no best.pt and summary.json; train it to the end first")
    state = torch.load(best, map_location="cpu", weights_only=True)
    model_cfg = ModelConfig(**state["config"]["model"])
    model = MLP(model_cfg)
    model.load_state_dict(state["model"])
    return model.eval(), state["config"], json.loads(summary.read_text())


def export_onnx(model: MLP, path: Path, opset: int) -> None:
    example = torch.rand(2, NUM_PIXELS)
    torch.onnx.export(
        model,
        (example,),
        path,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        dynamo=True,
        external_data=False,  # one self-contained file: the dynamo exporter otherwise writes model.onnx.data
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
    )


def check_parity(model: MLP, onnx_path: Path, script_path: Path, x: torch.Tensor, tolerance: float) -> dict[str, Any]:
    """Compare probabilities from eager, TorchScript and ONNX Runtime on `x`; raise ParityError past tolerance."""
    import onnxruntime as ort

    activation = model.config.head
    with torch.no_grad():
        eager = probabilities(model(x), activation)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            scripted = probabilities(torch.jit.load(script_path)(x), activation)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    (ort_logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    onnx = probabilities(torch.from_numpy(ort_logits), activation)

    def decide(p: torch.Tensor) -> torch.Tensor:
        return (p[:, 0] > 0.5).long() if p.shape[1] == 1 else p.argmax(dim=1)

    report: dict[str, Any] = {"samples": len(x), "tolerance": tolerance, "activation": activation}
    for name, other in (("torchscript", scripted), ("onnxruntime", onnx)):
        report[f"max_abs_diff_{name}"] = float((other - eager).abs().max())
        report[f"argmax_agreement_{name}"] = float((decide(other) == decide(eager)).float().mean())
    failures = []
    for name in ("torchscript", "onnxruntime"):
        diff, agreement = report[f"max_abs_diff_{name}"], report[f"argmax_agreement_{name}"]
        if diff > tolerance or agreement < 1.0:
            failures.append(f"{name}: max |diff| {diff:.3g}, argmax agreement {agreement}")
    if failures:
        raise ParityError(f"export parity failed (tolerance {tolerance}): " + "; ".join(failures))
    return report


class MetadataContractError(RuntimeError):
    """The metadata an export would write is not what the service accepts."""


def validate_metadata(metadata: dict[str, Any], schema_path: Path = METADATA_SCHEMA) -> None:
    """Check metadata.json against models/metadata.schema.json (the service's own contract, written from
    service/artifact.py) before anything is written: an export the service would refuse never lands."""
    import jsonschema

    schema = json.loads(schema_path.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(metadata), key=lambda e: list(e.path))
    if errors:
        where = "/".join(map(str, errors[0].path)) or "(top level)"
        raise MetadataContractError(
            f"metadata.json would break the serving contract ({schema_path}): {where}: {errors[0].message}"
        )


def labels_for(model_cfg: ModelConfig, positive_digits: list[int]) -> list[str]:
    if model_cfg.head == "softmax":
        return [str(d) for d in range(10)]
    digits = "/".join(str(d) for d in positive_digits)
    return [f"not {digits}", digits]  # index 0: negative, 1: positive (sigmoid > 0.5)


def build_metadata(
    name: str,
    model: MLP,
    run_config: dict[str, Any],
    summary: dict[str, Any],
    parity: dict[str, Any],
    files: dict[str, dict[str, Any]],
    export_cfg: ExportConfig,
    command: list[str] | None,
    onnx_path: Path,
) -> dict[str, Any]:
    """metadata.json's document (the contract: service/artifact.py). One literal, field by field in the order a
    reader meets them, which is why it is longer than a function should be: split, the document would be
    scattered over helpers that each build a few keys."""
    import onnx
    import onnxruntime

    model_cfg = model.config
    positive_digits = list(run_config["data"]["positive_digits"])
    onnx_model = onnx.load(onnx_path, load_external_data=False)
    metrics = {k: v for k, v in summary.items() if k not in ("parameters", "device")}
    return {
        "schema_version": METADATA_SCHEMA_VERSION,
        "name": name,
        "version": files["model.onnx"]["sha256"][:12],  # derived from content: same weights, same version
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "description": f"MLP 784-{'-'.join(map(str, (*model_cfg.hidden, model_cfg.out_features)))}, "
        f"{model_cfg.activation}, {model_cfg.head} head",
        "commands": {"train": run_config.get("command"), "export": command},
        "config": {
            "model": run_config["model"],
            "train": run_config["train"],
            "data": run_config["data"],
            "export": dataclasses.asdict(export_cfg),
        },
        "libraries": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        # what a seed does not fix (README, "Retrain and export"): where the weights were trained
        "machine": {"platform": platform.platform(), "arch": platform.machine(), "device": summary.get("device")},
        "onnx": {
            "opset": next(o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")),
            "ir_version": onnx_model.ir_version,
        },
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "shape": [-1, NUM_PIXELS],
            "range": [0.0, 1.0],
            "layout": "28x28 row-major; white digit (1.0) on a black background (0.0), as in MNIST",
        },
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [-1, model_cfg.out_features], "kind": "logits"},
        "head": model_cfg.head,
        "labels": labels_for(model_cfg, positive_digits),
        "positive_digits": positive_digits if model_cfg.head == "sigmoid" else None,
        "preprocessing": {
            "in_graph": True,
            "normalize": {"mean": MNIST_MEAN, "std": MNIST_STD},
            "formula": "(pixels - mean) / std, inside the exported graph",
            "pixel_scale": "uint8 value / 255",
        },
        "parameters": count_parameters(model),
        "metrics": metrics,
        "parity": parity,
        "files": files,
    }


def refuse_unfit_run(run_config: dict[str, Any], summary: dict[str, Any]) -> None:
    """A dry run (one update) or a run below its preset's accuracy floor is not a model to serve: exporting
    it would replace the shipped one (`models/<name>/`) with no word. --force exports it anyway."""
    train = run_config["train"]
    if train.get("dry_run"):
        raise ConfigError("run: a dry run (--dry-run: one update) is not a model to serve; pass --force to export it")
    preset = PRESETS.get(train.get("preset", ""))
    accuracy = summary.get("test_accuracy")
    if preset is not None and accuracy is not None and accuracy < preset.accuracy_floor:
        raise ConfigError(
            f"run: test accuracy {accuracy:.4f} is below the {train['preset']} preset's floor of "
            f"{preset.accuracy_floor}; train longer, or pass --force to export it anyway"
        )


def default_model_name(run_config: dict[str, Any]) -> str:
    """The run's name, as training named its folder (a dry run's is <preset>-dry-run)."""
    train = run_config["train"]
    return train.get("run_name") or default_run_name(train["preset"], bool(train.get("dry_run")))


def export(cfg: ExportConfig, command: list[str] | None = None) -> Path:
    """Write models/<name>/ atomically and return its path."""
    run_dir = Path(cfg.run)
    model, run_config, summary = load_checkpoint(run_dir)
    if not cfg.force:
        refuse_unfit_run(run_config, summary)
    name = cfg.name or default_model_name(run_config)
    require(name.replace("-", "").replace("_", "").isalnum(), "name", "letters, digits, '-' and '_' only", name)
    models_dir = Path(cfg.models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    data_cfg = DataConfig(root=cfg.data_root) if cfg.data_root else DataConfig()
    x = load_test_split(data_cfg).x[: cfg.parity_samples]

    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=models_dir))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream but still asked for
            torch.jit.save(torch.jit.script(model), tmp / "model.pt")
        export_onnx(model, tmp / "model.onnx", cfg.opset)
        if (tmp / "model.onnx.data").exists():
            raise RuntimeError("ONNX export wrote external data; expected one self-contained model.onnx")
        parity = check_parity(model, tmp / "model.onnx", tmp / "model.pt", x, cfg.tolerance)
        files = {
            f: {"sha256": sha256_of(tmp / f), "bytes": (tmp / f).stat().st_size} for f in ("model.onnx", "model.pt")
        }
        metadata = build_metadata(name, model, run_config, summary, parity, files, cfg, command, tmp / "model.onnx")
        validate_metadata(metadata)
        atomic_write_json(tmp / "metadata.json", metadata)
        _swap_into_place(tmp, models_dir / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s version %s to %s (parity %s)", name, metadata["version"], models_dir / name, parity)
    if cfg.bentoml:
        register_in_bentoml(models_dir / name, metadata)
    return models_dir / name


def _swap_into_place(new: Path, target: Path) -> None:
    """Rename `new` to `target`; an existing `target` is moved aside first and deleted after."""
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def register_in_bentoml(model_dir: Path, metadata: dict[str, Any]) -> None:
    """Save the exported folder into the local BentoML model store as `mnist-<name>:<version>`."""
    import bentoml

    tag = f"mnist-{metadata['name']}:{metadata['version']}"
    with bentoml.models.create(
        tag, metadata={k: metadata[k] for k in ("head", "labels", "metrics")}, labels={"head": metadata["head"]}
    ) as bento_model:
        for f in ("model.onnx", "metadata.json"):
            shutil.copy2(model_dir / f, bento_model.path_of(f))
    log.info("registered %s in the BentoML model store", tag)


def build_parser() -> argparse.ArgumentParser:
    defaults = ExportConfig(run="")
    p = argparse.ArgumentParser(
        prog="python -m training.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--run", required=True, help="run folder with best.pt and summary.json")
    p.add_argument("--name", help="model name: writes models/<name>/ (default: the run's name)")
    p.add_argument(
        "--models-dir",
        default=defaults.models_dir,
        help="where model folders go (default: %(default)s, the shipped models: an export replaces models/<name>/)",
    )
    p.add_argument("--opset", type=int, default=defaults.opset, help="ONNX opset (default: %(default)s)")
    p.add_argument(
        "--parity-samples",
        type=int,
        default=defaults.parity_samples,
        help="MNIST test images compared across eager, TorchScript and ONNX Runtime (default: %(default)s)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=defaults.tolerance,
        help="largest |probability difference| the parity gate accepts (default: %(default)s)",
    )
    p.add_argument("--data-root", help="folder holding MNIST/raw/ (default: $MNIST_ROOT or data/)")
    p.add_argument("--bentoml", action="store_true", help="also register the model in the BentoML model store")
    p.add_argument(
        "--force",
        action="store_true",
        help="export a dry run, or a run below its preset's accuracy floor (training/presets.py), anyway",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("onnx_ir", "onnxscript"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        cfg = ExportConfig(**vars(args))
        path = export(cfg, ["python", "-m", "training.export", *(sys.argv[1:] if argv is None else argv)])
    except (ConfigError, ParityError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
