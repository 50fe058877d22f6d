"""Training benchmarks: preloaded tensors vs a DataLoader pipeline, and the presets against their targets.

    python -m benchmarks.training                          # everything, writes docs/benchmarks.md
    python -m benchmarks.training --skip-presets           # only the data-pipeline comparison
    python -m benchmarks.training --device cuda            # on a GPU machine

Both pipelines train the same 784-50-10 network for one epoch on the same machine, side by side.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import MNIST

from training.data import DataConfig, load_mnist
from training.model import MLP, MNIST_MEAN, MNIST_STD
from training.presets import PRESETS
from training.train import TrainConfig, make_loss, resolve_device, train

from .report import update_section

TARGETS = {
    "fast": "test accuracy >= 98.5% (stretch 99.0%) in <= 120 s",
    "mnist-nn": "test accuracy >= 96.1% in <= 5 epochs",
    "pigeon": "report accuracy and ROC AUC (expect >= 98%)",
}


def epoch_preloaded(data_cfg: DataConfig, device: torch.device, batch_size: int) -> float:
    """One epoch indexing preloaded tensors, timed from load to last update, as training.train does it."""
    torch.manual_seed(0)
    t0 = time.perf_counter()
    train_split = load_mnist(data_cfg, device).train
    model = MLP(PRESETS["mnist-nn"].model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = make_loss(model.config, data_cfg.positive_digits)
    order = torch.randperm(len(train_split), device=device)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(train_split.x[idx]), train_split.y[idx]).backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def epoch_dataloader(data_cfg: DataConfig, device: torch.device, batch_size: int) -> float:
    """One epoch of the textbook pipeline: DataLoader over PIL images with ToTensor + Normalize."""
    torch.manual_seed(0)
    t0 = time.perf_counter()
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    dataset = MNIST(data_cfg.root, train=True, download=data_cfg.download, transform=transform)
    model = MLP(PRESETS["mnist-nn"].model).to(device)
    model.normalize = nn.Identity()  # the transform already normalized
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=True):
        x, y = x.to(device).view(len(x), 784), y.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench_pipeline(data_cfg: DataConfig, device: torch.device, repeats: int) -> str:
    rows = []
    for _ in range(repeats):
        naive = epoch_dataloader(data_cfg, device, 64)
        preloaded = epoch_preloaded(data_cfg, device, 64)
        rows.append((naive, preloaded))
        print(f"epoch: DataLoader(ToTensor, Normalize) {naive:.2f} s, preloaded tensors {preloaded:.2f} s")
    best_naive, best_pre = min(r[0] for r in rows), min(r[1] for r in rows)
    lines = [
        f"### Data pipeline: one epoch of 784-50-10, batch 64, {device.type}",
        "",
        "| run | DataLoader(ToTensor, Normalize) | preloaded tensors | speed-up |",
        "|---|---|---|---|",
        *(f"| {i + 1} | {n:.2f} s | {p:.2f} s | {n / p:.1f}x |" for i, (n, p) in enumerate(rows)),
        f"| best of {repeats} | {best_naive:.2f} s | {best_pre:.2f} s | **{best_naive / best_pre:.1f}x** |",
        "",
        f"Target: preloaded >= 5x faster per epoch: **{'met' if best_naive / best_pre >= 5 else 'missed'}**.",
    ]
    return "\n".join(lines)


def bench_presets(presets: list[str], data_cfg: DataConfig, device: str, out_dir: str) -> str:
    lines = [
        f"### Presets trained with `python -m training.train --preset NAME --device {device}`",
        "",
        "| preset | parameters | epochs | wall time (load+train+eval) | val acc | test acc | test ROC AUC | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in presets:
        preset = PRESETS[name]
        cfg = TrainConfig(**({"preset": name, "device": device, "out_dir": out_dir} | preset.train))
        t0 = time.perf_counter()
        summary = train(preset.model, cfg, data_cfg, command=["python", "-m", "benchmarks.training"]).summary
        wall = time.perf_counter() - t0
        auc = f"{summary['test_roc_auc']:.4f}" if "test_roc_auc" in summary else "-"
        print(f"{name}: {wall:.1f} s, test accuracy {summary['test_accuracy']:.4f}, ROC AUC {auc}")
        lines.append(
            f"| {name} | {summary['parameters']:,} | {summary['epochs']} | {wall:.1f} s "
            f"| {summary['val_accuracy']:.4f} | **{summary['test_accuracy']:.4f}** | {auc} | {TARGETS.get(name, '-')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    p = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--presets", nargs="*", default=["fast", "mnist-nn", "pigeon"])
    p.add_argument("--skip-presets", action="store_true")
    p.add_argument("--repeats", type=int, default=2, help="pipeline comparison repeats")
    p.add_argument("--out-dir", default="runs/bench")
    p.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    data_cfg = DataConfig()
    body = [bench_pipeline(data_cfg, device, args.repeats)]
    if not args.skip_presets:
        body.append(bench_presets(args.presets, data_cfg, device.type, args.out_dir))
    command = "python -m benchmarks.training " + " ".join(sys.argv[1:] if argv is None else argv)
    update_section(f"training-{device.type}", "## Training\n\n" + "\n\n".join(body), command.strip(), args.doc)
    print(f"written to {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
