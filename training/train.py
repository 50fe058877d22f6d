"""Train an MNIST multilayer perceptron and keep the best checkpoint by validation accuracy.

    python -m training.train --preset fast                    # 784-512-256-10, shipped as models/fast
    python -m training.train --preset pigeon                  # 784-30-1 sigmoid head
    python -m training.train --preset distorted --threads 1   # shipped as models/default (~8 min on 2 cores)
    python -m training.train --preset mnist-nn --epochs 5 --device cpu
    python -m training.train --resume runs/fast               # carry on after an interruption
    python -m training.train --preset fast --dry-run          # one update, for CI

A run folder (`runs/<name>/`) gets config.json, metrics.json, curves.png, last.pt (resumable),
best.pt (best validation accuracy, or the last epoch with --keep last) and summary.json (test accuracy of
best.pt).
Then `python -m training.export --run runs/<name>` writes `models/<name>/`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from tqdm import tqdm

from service.artifact import DEVICES  # the device names MNIST_DEVICE takes too

from .atomic import atomic_write, atomic_write_json
from .data import DataConfig, Distortion, MNISTSplits, Split, binary_targets, load_mnist, random_distort, random_shift
from .errors import ConfigError, require
from .model import HEADS, HIDDEN_ACTIVATIONS, MLP, ModelConfig, count_parameters, dead_unit_fraction
from .presets import PRESETS, default_run_name

log = logging.getLogger("training.train")

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")
KEEP = ("best", "last")
# The run folder's files are written at most this often, and after the last epoch: on a GPU an epoch of the
# default net takes a fraction of a second, less than redrawing curves.png and writing the checkpoints.
SAVE_EVERY_S = 10.0


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "mnist-nn"
    run_name: str | None = None  # run folder name under out_dir; default: the preset's name
    out_dir: str = "runs"
    epochs: int = 5
    batch_size: int = 64  # micro-batch size; with grad_accum > 1 each update sees batch_size * grad_accum images
    grad_accum: int = 1  # micro-batches per optimizer update
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    schedule: str = "constant"  # learning rate over the run's updates
    augment_shift: int = 0  # random +-pixels translation of training images; 0 = off
    # Distortions of each training batch (data.Distortion), after the shift; all zero = off, nothing drawn
    augment_rotate: float = 0.0  # degrees: each image turned by up to +-this
    augment_scale: float = 0.0  # fraction: each axis stretched by up to +-this, independently
    augment_translate: float = 0.0  # pixels: each axis moved by up to +-this, sub-pixel
    elastic_alpha: float = 0.0  # pixels: RMS per axis of the elastic displacement field; 0 = none
    elastic_sigma: float = 4.0  # pixels: the Gaussian smoothing the elastic field (larger = smoother)
    seed: int = 0
    device: str = "auto"  # auto picks CUDA when available
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU, where runs are exact and deterministic
    threads: int | None = None  # torch CPU threads; None keeps torch's default (one per core)
    eval_batch_size: int = 10_000
    dry_run: bool = False  # a single update and no plot: checks the whole pipeline in seconds
    # What best.pt holds: "best", the epoch with the highest validation accuracy; "last", the last epoch, the
    # model a schedule annealed to zero aims at, where the highest of many noisy validation scores (5,000
    # images: +-0.1% at 99.3%) tends to be a mid-anneal spike
    keep: str = "best"

    def __post_init__(self) -> None:
        require(self.preset in PRESETS, "preset", ", ".join(PRESETS), self.preset)
        require(self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        require(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        require(self.grad_accum >= 1, "grad_accum", "an integer >= 1 (micro-batches per update)", self.grad_accum)
        require(self.optimizer in OPTIMIZERS, "optimizer", ", ".join(OPTIMIZERS), self.optimizer)
        require(self.schedule in SCHEDULES, "schedule", ", ".join(SCHEDULES), self.schedule)
        require(self.keep in KEEP, "keep", ", ".join(KEEP), self.keep)
        require(self.lr > 0, "lr", "a positive learning rate", self.lr)
        require(self.weight_decay >= 0, "weight_decay", "a non-negative number", self.weight_decay)
        require(0 <= self.augment_shift <= 8, "augment_shift", "0..8 pixels", self.augment_shift)
        require(self.device in DEVICES, "device", ", ".join(DEVICES), self.device)
        _ = self.distortion  # Distortion refuses out-of-range values, naming the field
        if self.threads is not None:
            require(self.threads >= 1, "threads", "an integer >= 1", self.threads)

    @property
    def name(self) -> str:
        return self.run_name or default_run_name(self.preset, self.dry_run)

    @property
    def distortion(self) -> Distortion:
        return Distortion(
            self.augment_rotate, self.augment_scale, self.augment_translate, self.elastic_alpha, self.elastic_sigma
        )


def resolve_device(requested: str) -> torch.device:
    """auto -> cuda when available else cpu; asking for cuda without one is an error, not a silent fallback."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: got 'cuda' but no CUDA device is available; allowed here: auto, cpu")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, fused: bool = False) -> torch.optim.Optimizer:
    """`fused`: one kernel per step for all parameters (CUDA); off, torch's default, which on the CPU keeps
    the weights of earlier runs bit for bit."""
    params, fused_or_default = model.parameters(), (True if fused else None)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=fused_or_default
        )
    optimizer_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return optimizer_cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused_or_default)


def make_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_updates: int):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_updates)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total_updates)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def make_loss(model_cfg: ModelConfig, positive_digits: tuple[int, ...]) -> Callable[..., torch.Tensor]:
    """loss(logits, digit_labels, reduction) for the model's head."""
    if model_cfg.head == "softmax":
        return lambda logits, y, reduction="mean": F.cross_entropy(logits, y, reduction=reduction)
    return lambda logits, y, reduction="mean": F.binary_cross_entropy_with_logits(
        logits, binary_targets(y, positive_digits), reduction=reduction
    )


def correct_count(logits: torch.Tensor, y: torch.Tensor, positive_digits: tuple[int, ...]) -> torch.Tensor:
    """Correct predictions as a tensor on the logits' device: summed there, read once per epoch (no sync)."""
    if logits.shape[1] == 1:
        return ((logits > 0).float() == binary_targets(y, positive_digits)).sum()
    return (logits.argmax(dim=1) == y).sum()


def accumulated_update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    micro_batch: int,
    autocast: contextlib.AbstractContextManager | None = None,
    count_correct: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer update over (x, y), computed in micro-batches of `micro_batch` rows.

    Each micro-batch's summed loss is divided by the update's full size, so the accumulated gradient
    equals the gradient of the mean loss over all of (x, y): the same update as one large batch.
    Returns (summed loss, correct predictions in training mode) over the update's rows, as tensors on the
    device: reading them is a host sync, so the caller sums them over the epoch and reads them once.
    """
    optimizer.zero_grad(set_to_none=True)
    total = x.shape[0]
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, total, micro_batch):
        xb, yb = x[start : start + micro_batch], y[start : start + micro_batch]
        with autocast or contextlib.nullcontext():
            logits = model(xb)
            loss = loss_fn(logits, yb, reduction="sum")
        (loss / total).backward()
        loss_sum += loss.detach().double()
        if count_correct is not None:
            correct += count_correct(logits.detach().float(), yb)
    optimizer.step()
    return loss_sum, correct


def evaluate(
    model: MLP, split: Split, loss_fn: Callable[..., torch.Tensor], positive_digits: tuple[int, ...], batch: int
) -> dict[str, float]:
    """Mean loss and accuracy over `split` in evaluation mode (no dropout); the model is left in training mode."""
    model.eval()
    loss = torch.zeros((), dtype=torch.float64, device=split.x.device)
    correct = torch.zeros((), dtype=torch.int64, device=split.x.device)
    with torch.no_grad():
        for start in range(0, len(split), batch):
            xb, yb = split.x[start : start + batch], split.y[start : start + batch]
            logits = model(xb).float()
            loss += loss_fn(logits, yb, reduction="sum").double()
            correct += correct_count(logits, yb, positive_digits)
    model.train()
    return {"loss": float(loss) / len(split), "accuracy": int(correct) / len(split)}


def roc_auc(model: MLP, split: Split, positive_digits: tuple[int, ...]) -> float:
    from sklearn.metrics import roc_auc_score

    model.eval()
    with torch.no_grad():
        scores = model(split.x).float().squeeze(1).cpu().numpy()
    model.train()
    return float(roc_auc_score(binary_targets(split.y, positive_digits).squeeze(1).cpu().numpy(), scores))


def plot_curves(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Loss and accuracy per epoch into a PNG, with matplotlib's Figure API (no pyplot state to set up or close)."""
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.plot(epochs, [h["train_accuracy"] for h in history], marker="o", label="train")
    ax_acc.plot(epochs, [h["val_accuracy"] for h in history], marker="o", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def cpu_snapshot(obj: Any) -> Any:
    """A copy of `obj` (nested dicts, lists, tuples) whose tensors are detached CPU copies: what a checkpoint
    holds, untouched by the training steps that follow."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {key: cpu_snapshot(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(cpu_snapshot(value) for value in obj)
    return obj


class BestCheckpoint:
    """best.pt: the weights of the epoch with the highest validation accuracy so far (the earliest on a tie), or
    of the last epoch offered with `always` (--keep last), kept in memory when offered and written by `save`."""

    def __init__(self, path: Path, best_accuracy: float = -1.0) -> None:
        self.path = path
        self.best_accuracy = best_accuracy
        self._unsaved: dict[str, Any] | None = None

    def offer(self, accuracy: float, state: Callable[[], dict[str, Any]], always: bool = False) -> bool:
        """Keep a copy of `state()` if `accuracy` beats the best so far, or `always`; whether it did."""
        if accuracy <= self.best_accuracy and not always:
            return False
        self.best_accuracy = accuracy
        self._unsaved = cpu_snapshot(state())
        return True

    def save(self) -> None:
        """Write the best state to best.pt if it changed since the last save."""
        if self._unsaved is not None:
            save_checkpoint(self.path, self._unsaved)
            self._unsaved = None


def training_state(
    model: MLP, optimizer: torch.optim.Optimizer, schedule: Any, shuffle: torch.Generator
) -> dict[str, Any]:
    """What a run needs to go on as if never stopped: weights, optimizer, schedule and every random generator."""
    device = next(model.parameters()).device
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "shuffle_rng": shuffle.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,  # dropout's on a GPU
    }


def restore(
    path: Path,
    config: dict[str, Any],
    model: MLP,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    shuffle: torch.Generator,
) -> tuple[list[dict[str, Any]], float, int]:
    """Load last.pt (a `training_state` and the run's progress) into the model, optimizer, schedule and random
    generators; (history, best_val, epoch).

    Read onto the CPU: generator states must be CPU tensors, and load_state_dict moves the rest to the model's
    device. A run goes on on the kind of device it started on, whose generators it saved.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["config"]["model"] != config["model"]:
        raise ConfigError(f"resume: {path} was trained with another model config")
    saved, current = torch.device(state["config"]["device"]), torch.device(config["device"])
    if saved.type != current.type:
        raise ConfigError(
            f"resume: {path} was trained on {saved.type} and this run is on {current.type}; "
            f"resume it where {saved.type} is available, or start a new run"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    shuffle.set_state(state["shuffle_rng"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], current)
    return state["history"], state["best_val"], state["epoch"]


@dataclass
class RunResult:
    run_dir: Path
    model: MLP
    history: list[dict[str, Any]]
    summary: dict[str, Any]


def train(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    data_cfg: DataConfig,
    *,
    command: list[str] | None = None,
    resume: bool = False,
    stop_after_epoch: int | None = None,
    data: MNISTSplits | None = None,
) -> RunResult:
    """Fit `model_cfg` on MNIST; `resume` continues from run_dir/last.pt; `stop_after_epoch` simulates a crash.

    The run, top to bottom: set up (device, data, model, optimizer, schedule), restore, then per epoch one pass
    over the training split (`train_epoch`), its record (`epoch_record`), the best checkpoint and the periodic
    save (`save_progress`); last, the best model on the test set (`summarize`)."""
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    run_dir = Path(cfg.out_dir) / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)

    data = data or load_mnist(data_cfg, device)
    data = MNISTSplits(data.train.to(device), data.val.to(device), data.test.to(device))
    model = MLP(model_cfg).to(device)
    optimizer = make_optimizer(model, cfg, fused=device.type == "cuda")
    updates_per_epoch = 1 if cfg.dry_run else math.ceil(len(data.train) / (cfg.batch_size * cfg.grad_accum))
    epochs = 1 if cfg.dry_run else cfg.epochs
    schedule = make_schedule(optimizer, cfg, updates_per_epoch * epochs)
    loss_fn = make_loss(model_cfg, data_cfg.positive_digits)
    # Shuffles and augmentation offsets are drawn where the images are: on a GPU no per-step copy from the host.
    # On the CPU this is the generator it always was, so a seed gives the weights it gave before.
    shuffle = torch.Generator(device=device).manual_seed(cfg.seed)
    fit = Fit(model, optimizer, schedule, loss_fn, shuffle, cfg, data_cfg.positive_digits, device)

    config = {
        "model": dataclasses.asdict(model_cfg),
        "train": dataclasses.asdict(cfg),
        "data": dataclasses.asdict(data_cfg),
        "device": str(device),
        "parameters": count_parameters(model),
        "command": command,  # None when called as a library
    }
    history: list[dict[str, Any]] = []
    best_val, start_epoch = -1.0, 0
    if resume and (run_dir / "last.pt").exists():
        history, best_val, start_epoch = restore(run_dir / "last.pt", config, model, optimizer, schedule, shuffle)
        log.info("resumed %s after epoch %d", run_dir, start_epoch)
    atomic_write_json(run_dir / "config.json", config)
    log.info("training %s: %s, %d parameters on %s", cfg.name, model_cfg, config["parameters"], device)

    best_checkpoint = BestCheckpoint(run_dir / "best.pt", best_val)
    last_save = time.perf_counter()  # a run shorter than SAVE_EVERY_S writes its files once, after its last epoch
    for epoch in range(start_epoch + 1, epochs + 1):
        train_loss, train_accuracy, epoch_seconds = train_epoch(fit, data.train, updates_per_epoch, f"{epoch}/{epochs}")
        record = epoch_record(epoch, fit, data.val, train_loss, train_accuracy, epoch_seconds)
        history.append(record)
        best_checkpoint.offer(
            record["val_accuracy"],
            lambda: {"model": model.state_dict(), "config": config, "epoch": epoch, "metrics": record},
            always=cfg.keep == "last",
        )
        stopping = epoch == epochs or (stop_after_epoch is not None and epoch >= stop_after_epoch)
        if stopping or time.perf_counter() - last_save >= SAVE_EVERY_S:  # an interrupted run resumes from here
            save_progress(run_dir, fit, best_checkpoint, history, config, epoch)
            last_save = time.perf_counter()
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return RunResult(run_dir, model, history, {})
    summary = summarize(run_dir, fit, data.test, history, config)
    return RunResult(run_dir, model, history, summary)


@dataclass
class Fit:
    """What an epoch's updates work with, set up once by `train`."""

    model: MLP
    optimizer: torch.optim.Optimizer
    schedule: Any  # a torch.optim.lr_scheduler
    loss_fn: Any
    shuffle: torch.Generator
    cfg: TrainConfig
    positive_digits: tuple[int, ...]
    device: torch.device

    def count_correct(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return correct_count(logits, y, self.positive_digits)


def train_epoch(fit: Fit, split: Split, updates: int, label: str) -> tuple[float, float, float]:
    """One pass of `updates` updates over `split`, shuffled and augmented: (mean loss, accuracy in training mode
    (dropout on, augmented), seconds)."""
    cfg, device = fit.cfg, fit.device
    update_size = cfg.batch_size * cfg.grad_accum
    use_amp = cfg.amp and device.type == "cuda"
    t0 = time.perf_counter()
    order = torch.randperm(len(split), generator=fit.shuffle, device=device)
    # summed on the device and read once, after the epoch: a read per step was a host sync per step
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    fit.model.train()
    for i in tqdm(range(updates), desc=f"epoch {label}", leave=False, disable=None):
        idx = order[i * update_size : (i + 1) * update_size]
        x = random_distort(random_shift(split.x[idx], cfg.augment_shift, fit.shuffle), cfg.distortion, fit.shuffle)
        y = split.y[idx]
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else None
        batch_loss, batch_correct = accumulated_update(
            fit.model, fit.optimizer, fit.loss_fn, x, y, cfg.batch_size, autocast, fit.count_correct
        )
        fit.schedule.step()
        loss_sum += batch_loss
        correct += batch_correct
        seen += len(y)
    train_loss, train_correct = float(loss_sum), int(correct)  # waits for the device: the epoch's end
    return train_loss / seen, train_correct / seen, time.perf_counter() - t0


def epoch_record(
    epoch: int, fit: Fit, val_split: Split, train_loss: float, train_accuracy: float, seconds: float
) -> dict[str, Any]:
    """The epoch's line in metrics.json (validated on `val_split`), logged."""
    val = evaluate(fit.model, val_split, fit.loss_fn, fit.positive_digits, fit.cfg.eval_batch_size)
    record = {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_accuracy": train_accuracy,  # in training mode (dropout on, augmented), as it went
        "val_loss": val["loss"],
        "val_accuracy": val["accuracy"],
        "dead_relu_fraction": dead_unit_fraction(fit.model, val_split.x),
        "lr": fit.schedule.get_last_lr()[0],
        "epoch_seconds": seconds,
    }
    log.info(
        "epoch %d: train loss %.4f acc %.4f | val loss %.4f acc %.4f | dead relu %s | %.2fs",
        epoch,
        record["train_loss"],
        record["train_accuracy"],
        record["val_loss"],
        record["val_accuracy"],
        "n/a" if record["dead_relu_fraction"] is None else f"{record['dead_relu_fraction']:.3f}",
        seconds,
    )
    return record


def save_progress(
    run_dir: Path,
    fit: Fit,
    best_checkpoint: BestCheckpoint,
    history: list[dict[str, Any]],
    config: dict[str, Any],
    epoch: int,
) -> None:
    """best.pt, last.pt (what a resumed run starts from), metrics.json and the curves."""
    best_checkpoint.save()
    progress = {"history": history, "best_val": best_checkpoint.best_accuracy, "epoch": epoch, "config": config}
    state = training_state(fit.model, fit.optimizer, fit.schedule, fit.shuffle)
    save_checkpoint(run_dir / "last.pt", state | progress)
    atomic_write_json(run_dir / "metrics.json", history)
    if not fit.cfg.dry_run:
        plot_curves(history, run_dir / "curves.png", f"{fit.cfg.name}: {config['parameters']:,} parameters")


def summarize(
    run_dir: Path, fit: Fit, test_split: Split, history: list[dict[str, Any]], config: dict[str, Any]
) -> dict[str, Any]:
    """The best checkpoint loaded into the model and measured on `test_split`: summary.json, written."""
    model = fit.model
    best = torch.load(run_dir / "best.pt", map_location=fit.device, weights_only=True)
    model.load_state_dict(best["model"])
    test = evaluate(model, test_split, fit.loss_fn, fit.positive_digits, fit.cfg.eval_batch_size)
    summary = {
        "best_epoch": best["epoch"],
        "val_accuracy": best["metrics"]["val_accuracy"],
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "train_seconds": sum(h["epoch_seconds"] for h in history),
        "epochs": len(history),
        "parameters": config["parameters"],
        "device": str(fit.device),
    }
    if model.config.head == "sigmoid":
        summary["test_roc_auc"] = roc_auc(model, test_split, fit.positive_digits)
    atomic_write_json(run_dir / "summary.json", summary)
    log.info("%s: best epoch %d, test accuracy %.4f", fit.cfg.name, summary["best_epoch"], summary["test_accuracy"])
    return summary


def build_parser() -> argparse.ArgumentParser:
    """The CLI: one `add_argument` per flag, grouped as the configs they fill; as long as the flag list, for
    that reason."""
    p = argparse.ArgumentParser(
        prog="python -m training.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--preset", choices=sorted(PRESETS), help="named network and its training settings (default: mnist-nn)"
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt")
    p.add_argument("--run-name", help="run folder name (default: the preset's name; <preset>-dry-run for --dry-run)")
    p.add_argument("--out-dir", help="where run folders go (default: runs)")
    p.add_argument("--data-root", help="folder holding MNIST/raw/ (default: $MNIST_ROOT or data/)")
    p.add_argument("--no-download", action="store_true", help="never try to download MNIST")
    p.add_argument("--val-size", type=int, help="validation images carved from the training set (default 5000)")
    p.add_argument("--train-subset", type=int, help="train on the first N training images only")
    p.add_argument("--positive-digits", type=int, nargs="+", help="binary head: digits counted as positive")
    m = p.add_argument_group("model (overrides the preset)")
    m.add_argument("--hidden", type=int, nargs="*", help="hidden layer widths, e.g. --hidden 512 256; none = linear")
    m.add_argument("--activation", choices=HIDDEN_ACTIVATIONS)
    m.add_argument("--leaky-slope", type=float)
    m.add_argument("--maxout-pieces", type=int)
    m.add_argument("--dropout", type=float)
    m.add_argument("--head", choices=HEADS)
    t = p.add_argument_group("training (overrides the preset)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int, help="micro-batch size")
    t.add_argument("--grad-accum", type=int, help="micro-batches per optimizer update")
    t.add_argument("--optimizer", choices=OPTIMIZERS)
    t.add_argument("--lr", type=float)
    t.add_argument("--momentum", type=float)
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--schedule", choices=SCHEDULES)
    t.add_argument("--augment-shift", type=int, help="random translation in pixels (0 = off)")
    t.add_argument(
        "--augment-rotate", type=float, metavar="DEG", help="rotate each training image by up to +-DEG (0 = off)"
    )
    t.add_argument(
        "--augment-scale",
        type=float,
        metavar="FRAC",
        help="stretch each axis of each training image by up to +-FRAC, e.g. 0.1 for +-10%% (0 = off)",
    )
    t.add_argument(
        "--augment-translate",
        type=float,
        metavar="PX",
        help="move each training image by up to +-PX pixels per axis, sub-pixel (0 = off)",
    )
    t.add_argument(
        "--elastic-alpha",
        type=float,
        metavar="PX",
        help="elastic distortion: RMS displacement per axis in pixels (0 = off; Simard et al.'s alpha=34, "
        "sigma=4 is about 1.4)",
    )
    t.add_argument(
        "--elastic-sigma",
        type=float,
        metavar="PX",
        help="elastic distortion: width of the Gaussian smoothing the displacement field (default 4)",
    )
    t.add_argument("--seed", type=int)
    t.add_argument(
        "--keep",
        choices=KEEP,
        help="what best.pt holds: the epoch with the best validation accuracy (default) or the last epoch",
    )
    t.add_argument("--device", choices=DEVICES)
    t.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument(
        "--dry-run",
        action="store_true",
        help="one update, one epoch: a quick end-to-end check, in runs/<preset>-dry-run/ (export refuses it)",
    )
    return p


MODEL_FLAGS = ("hidden", "activation", "leaky_slope", "maxout_pieces", "dropout", "head")
TRAIN_FLAGS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def configs_from_args(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig, DataConfig, bool]:
    """Preset defaults, then explicit flags; --resume reloads the run's own config.json."""
    given = {k: v for k, v in vars(args).items() if v is not None and v is not False}
    if args.resume:
        saved = json.loads((Path(args.resume) / "config.json").read_text())
        model_cfg = ModelConfig(**saved["model"])
        train_values = {**saved["train"], "out_dir": str(Path(args.resume).parent), "run_name": Path(args.resume).name}
        data_values = dict(saved["data"])  # DataConfig makes the JSON list of positive digits a tuple
        if "data_root" in given:
            data_values["root"] = given["data_root"]
        return model_cfg, TrainConfig(**train_values), DataConfig(**data_values), True
    preset_name = given.get("preset", "mnist-nn")
    preset = PRESETS[preset_name]
    model_values = dataclasses.asdict(preset.model) | {k: given[k] for k in MODEL_FLAGS if k in given}
    train_values = {"preset": preset_name, **preset.train} | {k: given[k] for k in TRAIN_FLAGS if k in given}
    if args.no_amp:
        train_values["amp"] = False
    data_values: dict[str, Any] = {"download": not args.no_download}
    for flag, key in (
        ("data_root", "root"),
        ("val_size", "val_size"),
        ("train_subset", "train_subset"),
        ("positive_digits", "positive_digits"),
    ):
        if flag in given:
            data_values[key] = given[flag]
    return ModelConfig(**model_values), TrainConfig(**train_values), DataConfig(**data_values), False


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        model_cfg, train_cfg, data_cfg, resume = configs_from_args(args)
        command = ["python", "-m", "training.train", *(sys.argv[1:] if argv is None else argv)]
        result = train(model_cfg, train_cfg, data_cfg, command=command, resume=resume)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"run folder: {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
