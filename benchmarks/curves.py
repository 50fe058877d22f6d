"""Validation accuracy per epoch of one or more training runs, beside the literature's pure-MLP figures.

    python -m benchmarks.curves runs/distorted --out docs/img/distorted-accuracy.png
    python -m benchmarks.curves runs/distorted runs/r3:"dropout 0.1, 64 epochs" --out /tmp/compare.png

Reads each run's metrics.json (one row per epoch) and summary.json (the kept checkpoint's test accuracy and
the run's training seconds); the first run is drawn boldly, the others as context. RUN:LABEL names a line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Pure multilayer perceptrons on MNIST's test set, trained on distorted digits
LITERATURE = (
    (0.993, "Simard et al. 2003, 784-800-10, elastic: 99.3%"),
    (0.9965, "Ciresan et al. 2010, 784-2500-2000-1500-1000-500-10, affine + elastic, GPU: 99.65%"),
)


def plot(runs: list[tuple[Path, str]], out: Path, target: float | None) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5))
    ax = fig.subplots()
    for i, (run, label) in enumerate(runs):
        history = json.loads((run / "metrics.json").read_text())
        summary = json.loads((run / "summary.json").read_text())
        epochs = [h["epoch"] for h in history]
        name = f"{label}: test {summary['test_accuracy']:.2%}, {summary['train_seconds']:.0f} s of training"
        style = {"linewidth": 2.0, "color": "C0"} if i == 0 else {"linewidth": 1.0, "alpha": 0.6, "color": f"C{i + 1}"}
        ax.plot(epochs, [h["val_accuracy"] for h in history], label=f"{name} (validation per epoch)", **style)
        ax.plot(summary["best_epoch"], summary["test_accuracy"], marker="*", markersize=12, linestyle="none",
                color=style["color"])  # fmt: skip
    for value, label in LITERATURE:
        ax.axhline(value, linestyle=":", color="gray", linewidth=1)
        ax.text(1, value + 0.0002, label, color="gray", fontsize=8)
    if target is not None:
        ax.axhline(target, linestyle="--", color="C3", linewidth=1)
        ax.text(1, target + 0.0002, f"target {target:.1%}", color="C3", fontsize=8)
    ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0.98, 0.998), title="validation accuracy per epoch; * = test")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.curves", description=__doc__)
    p.add_argument("runs", nargs="+", help="run folders (RUN or RUN:LABEL), the first drawn boldly")
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    p.add_argument("--target", type=float, default=0.994, help="a dashed target line (default 0.994)")
    args = p.parse_args(argv)
    runs = [(Path(r.split(":", 1)[0]), r.split(":", 1)[1] if ":" in r else Path(r).name) for r in args.runs]
    plot(runs, args.out, args.target)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
