"""benchmarks.curves draws runs' validation accuracy from their metrics.json and summary.json."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.curves import main


def fake_run(folder: Path, accuracies: list[float]) -> Path:
    folder.mkdir()
    history = [{"epoch": i, "val_accuracy": acc} for i, acc in enumerate(accuracies, 1)]
    (folder / "metrics.json").write_text(json.dumps(history))
    summary = {"best_epoch": len(accuracies), "test_accuracy": accuracies[-1], "train_seconds": 12.5}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_curves_of_several_runs_make_one_png(tmp_path: Path) -> None:
    first = fake_run(tmp_path / "a", [0.985, 0.99, 0.994])
    second = fake_run(tmp_path / "b", [0.98, 0.989])
    out = tmp_path / "img" / "curves.png"
    assert main([str(first), f"{second}:a label: with a colon", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
