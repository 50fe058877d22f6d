from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training.data import DataConfig, MNISTSplits, binary_targets, random_shift
from training.model import MLP, ModelConfig
from training.presets import PRESETS
from training.train import (
    TrainConfig,
    accumulated_update,
    build_parser,
    configs_from_args,
    main,
    make_loss,
    train,
)


@pytest.mark.parametrize("micro_batch", [8, 12])  # 12 leaves an uneven last micro-batch (12 + 12 + 8)
def test_gradient_accumulation_equals_one_large_batch(micro_batch: int) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(hidden=(32,), head="softmax")
    reference = MLP(cfg)
    accumulated = MLP(cfg)
    accumulated.load_state_dict(reference.state_dict())
    x, y = torch.rand(32, 784), torch.randint(0, 10, (32,))
    loss_fn = make_loss(cfg, (0, 1, 2))
    for model, micro in ((reference, 32), (accumulated, micro_batch)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        accumulated_update(model, optimizer, loss_fn, x, y, micro)
    for p_ref, p_acc in zip(reference.parameters(), accumulated.parameters(), strict=True):
        torch.testing.assert_close(p_acc, p_ref, atol=1e-6, rtol=1e-5)
    assert not torch.equal(reference.head.weight, MLP(cfg).head.weight)  # the update did move the weights


def tiny_run(tmp_path: Path, data: MNISTSplits, name: str, **overrides) -> TrainConfig:
    values = {"preset": "mnist-nn", "epochs": 1, "device": "cpu", "out_dir": str(tmp_path), "run_name": name}
    return TrainConfig(**(values | overrides))


@pytest.mark.data
def test_same_seed_gives_the_same_weights_on_cpu(tmp_path: Path, small_mnist: MNISTSplits) -> None:
    cfg = ModelConfig(hidden=(32,), dropout=0.1)
    first = train(cfg, tiny_run(tmp_path, small_mnist, "a"), DataConfig(), data=small_mnist).model
    second = train(cfg, tiny_run(tmp_path, small_mnist, "b"), DataConfig(), data=small_mnist).model
    other_seed = train(cfg, tiny_run(tmp_path, small_mnist, "c", seed=1), DataConfig(), data=small_mnist).model
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first.head.weight, other_seed.head.weight)


@pytest.mark.data
def test_resumed_run_matches_an_uninterrupted_one(tmp_path: Path, small_mnist: MNISTSplits) -> None:
    cfg = ModelConfig(hidden=(32,), dropout=0.1)
    straight = train(cfg, tiny_run(tmp_path, small_mnist, "straight", epochs=3), DataConfig(), data=small_mnist)
    crashed = tiny_run(tmp_path, small_mnist, "crashed", epochs=3)
    partial = train(cfg, crashed, DataConfig(), data=small_mnist, stop_after_epoch=1)
    assert len(partial.history) == 1
    assert not (partial.run_dir / "summary.json").exists()
    resumed = train(cfg, crashed, DataConfig(), data=small_mnist, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.summary["test_accuracy"] == straight.summary["test_accuracy"]


@pytest.mark.data
@pytest.mark.slow
def test_short_training_run_learns_and_writes_its_run_folder(tmp_path: Path, small_mnist: MNISTSplits) -> None:
    preset = PRESETS["mnist-nn"]
    result = train(preset.model, tiny_run(tmp_path, small_mnist, "short", epochs=3), DataConfig(), data=small_mnist)
    assert result.summary["test_accuracy"] > 0.88  # 3,000 training images, 3 epochs
    for name in ("config.json", "metrics.json", "curves.png", "best.pt", "last.pt", "summary.json"):
        assert (result.run_dir / name).stat().st_size > 0, name
    history = json.loads((result.run_dir / "metrics.json").read_text())
    assert len(history) == 3
    assert set(history[0]) >= {"train_loss", "train_accuracy", "val_accuracy", "dead_relu_fraction", "epoch_seconds"}
    assert 0.0 <= history[0]["dead_relu_fraction"] <= 1.0
    assert (result.run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.data
def test_pigeon_reports_roc_auc(tmp_path: Path, small_mnist: MNISTSplits) -> None:
    preset = PRESETS["pigeon"]
    result = train(
        preset.model, tiny_run(tmp_path, small_mnist, "pigeon", preset="pigeon"), DataConfig(), data=small_mnist
    )
    assert result.summary["test_accuracy"] > 0.9
    assert result.summary["test_roc_auc"] > 0.95


@pytest.mark.data
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_cli_dry_run_of_every_preset(tmp_path: Path, mnist_root: Path, preset: str) -> None:
    argv = ["--preset", preset, "--dry-run", "--device", "cpu", "--out-dir", str(tmp_path)]
    assert main([*argv, "--data-root", str(mnist_root), "--no-download", "--train-subset", "500"]) == 0
    summary = json.loads((tmp_path / preset / "summary.json").read_text())
    assert summary["epochs"] == 1
    assert summary["parameters"] > 0


@pytest.mark.data
def test_cli_resume_reloads_the_runs_own_config(tmp_path: Path, mnist_root: Path) -> None:
    argv = ["--preset", "pigeon", "--dry-run", "--device", "cpu", "--out-dir", str(tmp_path), "--hidden", "12"]
    assert main([*argv, "--data-root", str(mnist_root), "--no-download", "--train-subset", "300"]) == 0
    args = build_parser().parse_args(["--resume", str(tmp_path / "pigeon"), "--data-root", str(mnist_root)])
    model_cfg, train_cfg, data_cfg, resume = configs_from_args(args)
    assert resume
    assert model_cfg.hidden == (12,)
    assert model_cfg.head == "sigmoid"
    assert train_cfg.run_name == "pigeon"
    assert train_cfg.out_dir == str(tmp_path)
    assert data_cfg.train_subset == 300


def test_binary_targets_mark_the_positive_digits() -> None:
    y = torch.tensor([0, 1, 2, 3, 9])
    assert binary_targets(y, (0, 1, 2)).squeeze(1).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_random_shift_moves_pixels_without_losing_them() -> None:
    image = torch.zeros(1, 28, 28)
    image[0, 10:18, 10:18] = 1.0  # a block away from the borders
    x = image.reshape(1, 784).repeat(64, 1)
    shifted = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape
    torch.testing.assert_close(shifted.sum(dim=1), x.sum(dim=1))
    assert not torch.equal(shifted, x)
    assert torch.equal(random_shift(x, 0), x)
