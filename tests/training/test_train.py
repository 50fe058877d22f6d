from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from training.data import DataConfig, MNISTSplits, Split
from training.errors import ConfigError
from training.model import MLP, ModelConfig
from training.presets import PRESETS
from training.train import (
    BestCheckpoint,
    TrainConfig,
    accumulated_update,
    build_parser,
    configs_from_args,
    correct_count,
    cpu_snapshot,
    evaluate,
    main,
    make_loss,
    make_optimizer,
    train,
)


@pytest.mark.parametrize("micro_batch", [8, 12])  # 12 leaves an uneven last micro-batch (12 + 12 + 8)
def test_gradient_accumulation_equals_one_large_batch(micro_batch: int) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(hidden=(32,), head="softmax")
    reference = MLP(cfg)
    accumulated = MLP(cfg)
    accumulated.load_state_dict(reference.state_dict())
    before = {name: p.detach().clone() for name, p in reference.named_parameters()}
    x, y = torch.rand(32, 784), torch.randint(0, 10, (32,))
    loss_fn = make_loss(cfg, (0, 1, 2))
    for model, micro in ((reference, 32), (accumulated, micro_batch)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        accumulated_update(model, optimizer, loss_fn, x, y, micro)
    for p_ref, p_acc in zip(reference.parameters(), accumulated.parameters(), strict=True):
        torch.testing.assert_close(p_acc, p_ref, atol=1e-6, rtol=1e-5)
    for name, p in reference.named_parameters():  # the update moved every parameter from where both started
        assert not torch.equal(p, before[name]), name


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
@pytest.mark.parametrize(
    "augment",
    [{}, {"augment_shift": 2, "augment_rotate": 10.0, "elastic_alpha": 1.0, "elastic_sigma": 4.0}],
    ids=["plain", "augmented"],
)
def test_resumed_run_matches_an_uninterrupted_one(tmp_path: Path, small_mnist: MNISTSplits, augment: dict) -> None:
    """Augmentation included: its draws come from the run's generator, which last.pt carries, not the global one."""
    cfg = ModelConfig(hidden=(32,), dropout=0.1)
    straight = train(
        cfg, tiny_run(tmp_path, small_mnist, "straight", epochs=3, **augment), DataConfig(), data=small_mnist
    )
    crashed = tiny_run(tmp_path, small_mnist, "crashed", epochs=3, **augment)
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
    summary = json.loads((tmp_path / f"{preset}-dry-run" / "summary.json").read_text())  # never runs/<preset>/
    assert summary["epochs"] == 1
    assert summary["parameters"] > 0


@pytest.mark.data
def test_cli_resume_reloads_the_runs_own_config(tmp_path: Path, mnist_root: Path) -> None:
    argv = ["--preset", "pigeon", "--dry-run", "--device", "cpu", "--out-dir", str(tmp_path), "--hidden", "12"]
    assert main([*argv, "--data-root", str(mnist_root), "--no-download", "--train-subset", "300"]) == 0
    run = str(tmp_path / "pigeon-dry-run")
    assert configs_from_args(build_parser().parse_args(["--resume", run]))[2].root == str(mnist_root)  # the run's
    args = build_parser().parse_args(["--resume", run, "--data-root", str(tmp_path / "moved")])
    model_cfg, train_cfg, data_cfg, resume = configs_from_args(args)
    assert resume
    assert data_cfg.root == str(tmp_path / "moved")  # the one setting a resumed run takes from its flags
    assert data_cfg.positive_digits == (0, 1, 2)
    assert model_cfg.hidden == (12,)
    assert model_cfg.head == "sigmoid"
    assert train_cfg.run_name == "pigeon-dry-run"
    assert train_cfg.out_dir == str(tmp_path)
    assert data_cfg.train_subset == 300


def synthetic(n: int, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.rand(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g))


@pytest.fixture
def synthetic_splits() -> MNISTSplits:
    """Random pixels and digits: enough to check the loop's mechanics in a fraction of a second."""
    return MNISTSplits(synthetic(256, 0), synthetic(64, 1), synthetic(64, 2))


def test_the_learning_rate_follows_its_schedule_over_the_run(tmp_path: Path, synthetic_splits: MNISTSplits) -> None:
    def lrs(schedule: str) -> list[float]:
        cfg = tiny_run(tmp_path, synthetic_splits, schedule, epochs=2, batch_size=64, lr=1e-2, schedule=schedule)
        return [h["lr"] for h in train(ModelConfig(hidden=(8,)), cfg, DataConfig(), data=synthetic_splits).history]

    assert lrs("constant") == [1e-2, 1e-2]
    cosine = lrs("cosine")  # 4 of 8 updates: halfway down the cosine, then at its end
    assert cosine[0] == pytest.approx(0.5e-2, rel=1e-6)
    assert cosine[1] == pytest.approx(0.0, abs=1e-12)
    onecycle = lrs("onecycle")  # starts at lr / 25, peaks at 30% of the run, then anneals
    assert 1e-2 / 25 < onecycle[0] < 1e-2
    assert onecycle[1] < onecycle[0]


def test_best_checkpoint_keeps_the_epoch_with_the_best_validation_accuracy(tmp_path: Path) -> None:
    best = BestCheckpoint(tmp_path / "best.pt")
    written = [best.offer(acc, lambda e=epoch: {"epoch": e}) for epoch, acc in enumerate([0.5, 0.7, 0.6, 0.7, 0.2], 1)]
    assert written == [True, True, False, False, False]  # a tie keeps the earlier epoch
    assert not (tmp_path / "best.pt").exists()  # kept in memory until the run's next save
    best.save()
    assert torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] == 2
    assert best.best_accuracy == 0.7


def test_keep_last_takes_every_epoch_whatever_its_accuracy(tmp_path: Path, synthetic_splits: MNISTSplits) -> None:
    kept = BestCheckpoint(tmp_path / "best.pt")
    written = [kept.offer(acc, lambda e=epoch: {"epoch": e}, always=True) for epoch, acc in enumerate([0.7, 0.5], 1)]
    assert written == [True, True]
    kept.save()
    assert torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] == 2
    cfg = tiny_run(tmp_path, synthetic_splits, "last", epochs=3, keep="last")
    result = train(ModelConfig(hidden=(8,)), cfg, DataConfig(), data=synthetic_splits)
    assert result.summary["best_epoch"] == 3
    assert result.summary["val_accuracy"] == result.history[-1]["val_accuracy"]


def test_a_resumed_run_keeps_its_best_accuracy(tmp_path: Path) -> None:
    best = BestCheckpoint(tmp_path / "best.pt", best_accuracy=0.9)
    assert not best.offer(0.8, lambda: {"epoch": 3})
    best.save()
    assert not (tmp_path / "best.pt").exists()


def test_evaluation_runs_without_dropout_and_restores_training_mode(synthetic_splits: MNISTSplits) -> None:
    torch.manual_seed(0)
    model = MLP(ModelConfig(hidden=(64,), dropout=0.5))
    loss_fn = make_loss(model.config, (0, 1, 2))
    val = synthetic_splits.val
    result = evaluate(model, val, loss_fn, (0, 1, 2), batch=24)  # batches of 24, 24, 16
    assert model.training
    model.eval()
    with torch.no_grad():
        logits = model(val.x)
    assert result["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, val.y)), rel=1e-5)
    assert result["accuracy"] == pytest.approx(float((logits.argmax(1) == val.y).float().mean()))


def test_binary_head_loss_and_accuracy_use_the_positive_digits() -> None:
    cfg = ModelConfig(hidden=(), head="sigmoid")
    logits = torch.tensor([[2.0], [-1.0], [0.5], [-3.0]])
    digits = torch.tensor([1, 1, 7, 4])  # positives: 0, 1, 2 -> targets 1, 1, 0, 0
    targets = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    loss = make_loss(cfg, (0, 1, 2))(logits, digits, reduction="sum")
    assert float(loss) == pytest.approx(float(F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")))
    assert int(correct_count(logits, digits, (0, 1, 2))) == 2  # right on the first and the last
    ten = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0]])
    assert int(correct_count(ten, torch.tensor([1, 2]), (0,))) == 1


@pytest.mark.parametrize("micro_batch", [20, 8])
def test_an_update_follows_the_gradient_of_the_mean_loss(micro_batch: int) -> None:
    torch.manual_seed(0)
    model = MLP(ModelConfig(hidden=(16,)))
    x, y = torch.rand(20, 784), torch.randint(0, 10, (20,))
    reference = MLP(model.config)
    reference.load_state_dict(model.state_dict())
    F.cross_entropy(reference(x), y).backward()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # keeps the weights: the gradients are what we check
    accumulated_update(model, optimizer, make_loss(model.config, (0,)), x, y, micro_batch)
    for p, p_ref in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p_ref.grad, atol=1e-6, rtol=1e-5)


def test_the_loss_is_a_mean_unless_asked_otherwise() -> None:
    logits, digits = torch.tensor([[2.0, -1.0], [0.5, 0.3]]), torch.tensor([0, 1])
    softmax_loss = make_loss(ModelConfig(), (0,))
    assert float(softmax_loss(logits, digits)) == pytest.approx(float(F.cross_entropy(logits, digits)))
    sigmoid_loss = make_loss(ModelConfig(head="sigmoid"), (0,))
    targets = torch.tensor([[1.0], [0.0]])
    expected = F.binary_cross_entropy_with_logits(logits[:, :1], targets)
    assert float(sigmoid_loss(logits[:, :1], digits)) == pytest.approx(float(expected))


def test_an_update_reports_its_summed_loss_and_training_mode_accuracy() -> None:
    torch.manual_seed(0)
    model = MLP(ModelConfig(hidden=(16,)))
    x, y = torch.rand(20, 784), torch.randint(0, 10, (20,))
    with torch.no_grad():
        logits = model(x)
    loss_fn = make_loss(model.config, (0,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # no step: the report is about the weights it saw
    loss_sum, correct = accumulated_update(
        model, optimizer, loss_fn, x, y, 8, count_correct=lambda lg, yb: correct_count(lg, yb, (0,))
    )
    assert float(loss_sum) == pytest.approx(float(F.cross_entropy(logits, y, reduction="sum")), rel=1e-5)
    assert int(correct) == int((logits.argmax(1) == y).sum())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA: needs an NVIDIA GPU and a CUDA build of torch")
@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_a_run_on_cuda_trains_and_checkpoints(tmp_path: Path, synthetic_splits: MNISTSplits, head: str) -> None:
    cfg = tiny_run(tmp_path, synthetic_splits, head, epochs=2, device="cuda", augment_shift=2)  # augmented on the GPU
    result = train(ModelConfig(hidden=(16,), head=head), cfg, DataConfig(), data=synthetic_splits)
    assert result.summary["device"].startswith("cuda")
    assert len(result.history) == 2
    assert torch.load(result.run_dir / "best.pt", weights_only=True)["epoch"] in (1, 2)


def test_resume_refuses_a_checkpoint_from_another_kind_of_device(tmp_path: Path, synthetic_splits: MNISTSplits) -> None:
    cfg = tiny_run(tmp_path, synthetic_splits, "moved", epochs=2)
    model_cfg = ModelConfig(hidden=(8,))
    train(model_cfg, cfg, DataConfig(), data=synthetic_splits, stop_after_epoch=1)
    last = tmp_path / "moved" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["config"]["device"] = "cuda"  # as a GPU run's checkpoint says; its generator states are CUDA ones
    torch.save(state, last)
    with pytest.raises(ConfigError, match="trained on cuda and this run is on cpu"):
        train(model_cfg, cfg, DataConfig(), data=synthetic_splits, resume=True)


@pytest.mark.parametrize(("every_s", "draws"), [(1e9, [3]), (0.0, [1, 2, 3])])
def test_the_run_files_are_written_at_most_every_few_seconds_and_after_the_last_epoch(
    tmp_path: Path, synthetic_splits: MNISTSplits, monkeypatch: pytest.MonkeyPatch, every_s: float, draws: list[int]
) -> None:
    drawn: list[int] = []
    monkeypatch.setattr("training.train.SAVE_EVERY_S", every_s)
    monkeypatch.setattr("training.train.plot_curves", lambda history, path, title: drawn.append(len(history)))
    cfg = tiny_run(tmp_path, synthetic_splits, f"plots-{every_s}", epochs=3)
    result = train(ModelConfig(hidden=(8,)), cfg, DataConfig(), data=synthetic_splits)
    assert drawn == draws
    assert torch.load(result.run_dir / "last.pt", weights_only=True)["epoch"] == 3


def test_a_checkpoint_snapshot_is_not_changed_by_later_training_steps() -> None:
    weights = torch.zeros(3)
    state = {"model": {"w": weights}, "history": [{"epoch": 1}], "rng": (weights, 7)}
    snapshot = cpu_snapshot(state)
    weights.add_(1.0)  # what the next optimizer step does to a live parameter
    assert torch.equal(snapshot["model"]["w"], torch.zeros(3))
    assert torch.equal(snapshot["rng"][0], torch.zeros(3))
    assert snapshot["rng"][1] == 7
    assert snapshot["history"] == [{"epoch": 1}]


def test_a_run_folder_is_complete_when_train_returns(tmp_path: Path, synthetic_splits: MNISTSplits) -> None:
    cfg = tiny_run(tmp_path, synthetic_splits, "complete", epochs=2)
    result = train(ModelConfig(hidden=(8,)), cfg, DataConfig(), data=synthetic_splits)
    assert len(json.loads((result.run_dir / "metrics.json").read_text())) == 2
    assert torch.load(result.run_dir / "last.pt", weights_only=True)["epoch"] == 2
    assert (result.run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(result.run_dir.glob(".*.tmp"))  # no half-written file left behind


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA: needs an NVIDIA GPU and a CUDA build of torch")
def test_a_run_on_cuda_resumes_with_its_device_generators(tmp_path: Path, synthetic_splits: MNISTSplits) -> None:
    cfg = tiny_run(tmp_path, synthetic_splits, "cuda-resume", epochs=2, device="cuda", augment_shift=2)
    model_cfg = ModelConfig(hidden=(16,), dropout=0.1)
    train(model_cfg, cfg, DataConfig(), data=synthetic_splits, stop_after_epoch=1)
    resumed = train(model_cfg, cfg, DataConfig(), data=synthetic_splits, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]


def test_a_runs_summary_agrees_with_its_own_history(tmp_path: Path, synthetic_splits: MNISTSplits) -> None:
    """summary.json (and so the exported metadata's metrics) against the run's own per-epoch record: the best
    epoch is the earliest with the highest validation accuracy, and the summary's figures are that epoch's."""
    cfg = tiny_run(tmp_path, synthetic_splits, "agree", epochs=5, batch_size=32, lr=2e-2, seed=2)
    result = train(ModelConfig(hidden=(16,)), cfg, DataConfig(), data=synthetic_splits)
    history = json.loads((result.run_dir / "metrics.json").read_text())
    summary = json.loads((result.run_dir / "summary.json").read_text())
    config = json.loads((result.run_dir / "config.json").read_text())
    assert summary == result.summary
    assert history == result.history
    best = max(history, key=lambda h: (h["val_accuracy"], -h["epoch"]))  # the earliest of the best
    assert 1 < best["epoch"] < len(history)  # this run's best is neither its first nor its last epoch
    assert summary["best_epoch"] == best["epoch"]
    assert summary["val_accuracy"] == best["val_accuracy"]
    assert summary["epochs"] == len(history) == cfg.epochs
    assert summary["train_seconds"] == pytest.approx(sum(h["epoch_seconds"] for h in history))
    assert summary["parameters"] == config["parameters"] == sum(p.numel() for p in result.model.parameters())
    assert summary["device"] == config["device"] == "cpu"
    best_pt = torch.load(result.run_dir / "best.pt", weights_only=True)
    assert best_pt["epoch"] == best["epoch"]
    for name, tensor in result.model.state_dict().items():  # the model tested is best.pt's
        assert torch.equal(tensor, best_pt["model"][name]), name
    loss_fn = make_loss(result.model.config, (0, 1, 2))
    test = evaluate(result.model, synthetic_splits.test, loss_fn, (0, 1, 2), batch=64)
    assert (summary["test_accuracy"], summary["test_loss"]) == (test["accuracy"], pytest.approx(test["loss"]))


def test_grad_accum_trains_as_a_batch_n_times_larger_through_train(
    tmp_path: Path, synthetic_splits: MNISTSplits
) -> None:
    """Through train(): the run's sizing (updates per epoch, the schedule's length) and its updates with
    --grad-accum 4 --batch-size 16 are those of --batch-size 64."""
    model_cfg = ModelConfig(hidden=(16,))  # no dropout: its masks are drawn per micro-batch
    common = {"epochs": 2, "optimizer": "sgd", "lr": 0.1, "schedule": "cosine"}
    large = train(model_cfg, tiny_run(tmp_path, synthetic_splits, "large", batch_size=64, **common), DataConfig(),
                  data=synthetic_splits)  # fmt: skip
    accumulated = train(
        model_cfg,
        tiny_run(tmp_path, synthetic_splits, "accumulated", batch_size=16, grad_accum=4, **common),
        DataConfig(),
        data=synthetic_splits,
    )
    unaccumulated = train(model_cfg, tiny_run(tmp_path, synthetic_splits, "small", batch_size=16, **common),
                          DataConfig(), data=synthetic_splits)  # fmt: skip
    assert [h["lr"] for h in accumulated.history] == [h["lr"] for h in large.history]  # 4 updates an epoch
    for (name, p_acc), p_large in zip(
        accumulated.model.state_dict().items(), large.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(p_acc, p_large, atol=1e-6, rtol=1e-5, msg=name)
    assert not torch.allclose(unaccumulated.model.head.weight, large.model.head.weight, atol=1e-4)  # it can differ


def test_each_cli_flag_lands_in_the_setting_it_names() -> None:
    argv = [
        "--preset", "pigeon", "--run-name", "r", "--out-dir", "o", "--data-root", "d", "--no-download",
        "--val-size", "100", "--train-subset", "500", "--positive-digits", "3", "4",
        "--hidden", "7", "5", "--activation", "leaky_relu", "--leaky-slope", "0.2", "--maxout-pieces", "3",
        "--dropout", "0.1", "--head", "softmax",
        "--epochs", "7", "--batch-size", "16", "--grad-accum", "4", "--optimizer", "sgd", "--lr", "0.5",
        "--momentum", "0.8", "--weight-decay", "0.01", "--schedule", "cosine", "--augment-shift", "3",
        "--augment-rotate", "12", "--augment-scale", "0.15", "--augment-translate", "1.5", "--elastic-alpha", "0.8",
        "--elastic-sigma", "5", "--keep", "last",
        "--seed", "9", "--device", "cpu", "--no-amp", "--threads", "2", "--dry-run",
    ]  # fmt: skip
    model_cfg, train_cfg, data_cfg, resume = configs_from_args(build_parser().parse_args(argv))
    assert not resume
    assert model_cfg == ModelConfig(
        hidden=(7, 5), activation="leaky_relu", leaky_slope=0.2, maxout_pieces=3, dropout=0.1, head="softmax"
    )
    assert train_cfg == TrainConfig(
        preset="pigeon", run_name="r", out_dir="o", epochs=7, batch_size=16, grad_accum=4, optimizer="sgd", lr=0.5,
        momentum=0.8, weight_decay=0.01, schedule="cosine", augment_shift=3, augment_rotate=12.0, augment_scale=0.15,
        augment_translate=1.5, elastic_alpha=0.8, elastic_sigma=5.0, keep="last", seed=9, device="cpu", amp=False,
        threads=2, dry_run=True,
    )  # fmt: skip
    assert data_cfg == DataConfig(root="d", val_size=100, train_subset=500, positive_digits=(3, 4), download=False)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_preset_alone_gives_its_own_settings_and_the_defaults_for_the_rest(preset: str) -> None:
    model_cfg, train_cfg, data_cfg, _ = configs_from_args(build_parser().parse_args(["--preset", preset]))
    assert model_cfg == PRESETS[preset].model
    assert train_cfg == TrainConfig(preset=preset, **PRESETS[preset].train)
    assert data_cfg == DataConfig()
    no_preset = configs_from_args(build_parser().parse_args([]))
    assert no_preset[:3] == (PRESETS["mnist-nn"].model, TrainConfig(**PRESETS["mnist-nn"].train), DataConfig())


def test_a_run_trains_on_the_subset_for_the_epochs_its_flags_say(tmp_path: Path, synthetic_splits: MNISTSplits) -> None:
    """--epochs and the training set's size through train(): the epochs recorded, and the updates made (the
    learning rate of a cosine schedule reaches its end after exactly epochs x ceil(images / update) updates)."""
    cfg = tiny_run(tmp_path, synthetic_splits, "sized", epochs=3, batch_size=50, schedule="cosine", lr=1e-2)
    result = train(ModelConfig(hidden=(8,)), cfg, DataConfig(), data=synthetic_splits)  # 256 images: 6 updates
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert result.history[0]["lr"] == pytest.approx(0.5e-2 * (1 + math.cos(math.pi * 6 / 18)), rel=1e-6)


# What train() sets up before the first epoch, and what it says at the end (survivors of issue 18's mutation run
# over train(), make_optimizer and summarize).


@pytest.mark.parametrize(
    ("name", "kind"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]
)
def test_the_optimizer_is_the_one_named_with_the_runs_settings(name: str, kind: type) -> None:
    model = torch.nn.Linear(3, 2)
    cfg = TrainConfig(optimizer=name, lr=0.05, momentum=0.7, weight_decay=0.02)
    plain, fused = make_optimizer(model, cfg), make_optimizer(model, cfg, fused=True)
    assert (type(plain), type(fused)) == (kind, kind)
    group = plain.param_groups[0]
    assert (group["lr"], group["weight_decay"], group.get("momentum", 0.7)) == (0.05, 0.02, 0.7)
    assert plain.defaults["fused"] is None  # torch's default: on the CPU, the weights of earlier runs bit for bit
    assert fused.defaults["fused"] is True


def test_a_cpu_run_sets_its_threads_and_deterministic_algorithms(tmp_path: Path, synthetic_splits: MNISTSplits) -> None:
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        cfg = tiny_run(tmp_path / "not" / "yet" / "made", synthetic_splits, "setup", threads=1)
        result = train(ModelConfig(hidden=(8,)), cfg, DataConfig(), data=synthetic_splits)
        assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (1, True)
        assert result.run_dir == tmp_path / "not" / "yet" / "made" / "setup"  # its parents made too
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def test_a_run_not_told_to_resume_starts_afresh_and_logs_its_result(
    tmp_path: Path, synthetic_splits: MNISTSplits, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, model_cfg = tiny_run(tmp_path, synthetic_splits, "again", epochs=2), ModelConfig(hidden=(8,))
    train(model_cfg, cfg, DataConfig(), data=synthetic_splits, stop_after_epoch=1)  # leaves last.pt behind
    with caplog.at_level("INFO", logger="training.train"):
        result = train(model_cfg, cfg, DataConfig(), data=synthetic_splits)
    assert not any(m.startswith("resumed") for m in caplog.messages)
    assert [r["epoch"] for r in result.history] == [1, 2]
    summary = result.summary
    assert caplog.messages[-1] == (
        f"again: best epoch {summary['best_epoch']}, test accuracy {summary['test_accuracy']:.4f}"
    )


@pytest.mark.parametrize(("dry_run", "updates", "epochs"), [(False, [3, 3], 2), (True, [1], 1)])
def test_a_cpu_run_asks_for_the_unfused_optimizer_and_sizes_its_epochs(
    tmp_path: Path,
    synthetic_splits: MNISTSplits,
    monkeypatch: pytest.MonkeyPatch,
    dry_run: bool,
    updates: list[int],
    epochs: int,
) -> None:
    """256 training images, batches of 50, 2 per update: ceil(256 / 100) = 3 updates an epoch; a dry run, one."""
    import training.train as loop

    asked, sized, tags, returned = [], [], [], []
    optimizer, epoch = loop.make_optimizer, loop.train_epoch

    def one_epoch(fit: loop.Fit, split: Split, updates: int, tag: str) -> tuple[float, float, float]:
        sized.append(updates)
        tags.append(tag)
        returned.append(epoch(fit, split, updates, tag))
        return returned[-1]

    monkeypatch.setattr(loop, "make_optimizer", lambda *a, **kw: asked.append(kw) or optimizer(*a, **kw))
    monkeypatch.setattr(loop, "train_epoch", one_epoch)
    cfg = tiny_run(tmp_path, synthetic_splits, "sized", epochs=2, batch_size=50, grad_accum=2, dry_run=dry_run)
    result = train(ModelConfig(hidden=(8,)), cfg, DataConfig(), data=synthetic_splits)
    assert asked == [{"fused": False}]  # torch's default optimizer on the CPU: earlier runs' weights, bit for bit
    assert sized == updates
    assert tags == [f"{e}/{epochs}" for e in range(1, epochs + 1)]  # the progress bar's label
    assert [(r["train_loss"], r["train_accuracy"]) for r in result.history] == [(lo, ac) for lo, ac, _ in returned]
    assert all(0 < r["train_accuracy"] <= 1 and 0 < r["epoch_seconds"] < 600 for r in result.history)


def test_a_resumed_run_says_where_it_starts_then_what_it_trains(
    tmp_path: Path, synthetic_splits: MNISTSplits, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, model_cfg = tiny_run(tmp_path, synthetic_splits, "logged", epochs=2), ModelConfig(hidden=(8,))
    train(model_cfg, cfg, DataConfig(), data=synthetic_splits, stop_after_epoch=1)
    with caplog.at_level("INFO", logger="training.train"):
        result = train(model_cfg, cfg, DataConfig(), data=synthetic_splits, resume=True)
    parameters = 784 * 8 + 8 + 8 * 10 + 10
    assert caplog.messages[:2] == [
        f"resumed {result.run_dir} after epoch 1",
        f"training logged: {model_cfg}, {parameters} parameters on cpu",
    ]


@pytest.mark.parametrize(("keep", "kept"), [("best", 1), ("last", 2)])
def test_the_epoch_kept_across_a_resume_is_the_one_keep_names(
    tmp_path: Path, synthetic_splits: MNISTSplits, monkeypatch: pytest.MonkeyPatch, keep: str, kept: int
) -> None:
    """Validation accuracy 0.9 after epoch 1, 0.5 after epoch 2: the best is epoch 1, even across a resume
    (its accuracy comes back with last.pt), and `--keep last` takes epoch 2 all the same."""
    import training.train as loop

    record = loop.epoch_record
    monkeypatch.setattr(loop, "epoch_record", lambda e, *a: record(e, *a) | {"val_accuracy": {1: 0.9, 2: 0.5}[e]})
    cfg, model_cfg = tiny_run(tmp_path, synthetic_splits, keep, epochs=2, keep=keep), ModelConfig(hidden=(8,))
    stopped = train(model_cfg, cfg, DataConfig(), data=synthetic_splits, stop_after_epoch=1)
    assert isinstance(stopped.model, MLP)
    assert stopped.summary == {}  # no test-set figures for a run that did not finish
    result = train(model_cfg, cfg, DataConfig(), data=synthetic_splits, resume=True)
    assert result.summary["best_epoch"] == kept


def test_the_run_files_wait_for_the_save_interval(
    tmp_path: Path, synthetic_splits: MNISTSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clock that moves 1 ms per reading never reaches a 5 s interval in 3 short epochs: one save, at the end."""
    import training.train as loop

    readings = iter(1000.0 + i / 1000 for i in range(10**6))
    drawn: list[tuple[int, str]] = []
    monkeypatch.setattr(loop, "SAVE_EVERY_S", 5.0)
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(readings))
    monkeypatch.setattr(loop, "plot_curves", lambda history, path, title: drawn.append((len(history), title)))
    train(
        ModelConfig(hidden=(8,)),
        tiny_run(tmp_path, synthetic_splits, "clock", epochs=3),
        DataConfig(),
        data=synthetic_splits,
    )
    assert drawn == [(3, "clock: 6,370 parameters")]


def test_an_epochs_train_loss_and_accuracy_are_per_image_seen(
    tmp_path: Path, synthetic_splits: MNISTSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each update reports a summed loss of 10 and 5 correct: 3 updates over the 256 training images give a mean
    loss of 30 / 256 and an accuracy of 15 / 256."""
    import training.train as loop

    def scripted(model, optimizer, loss_fn, x, y, *rest):  # noqa: ANN001, ANN002, ANN202
        optimizer.step()  # no gradients: changes nothing, but the schedule steps after an optimizer step
        return torch.tensor(10.0, dtype=torch.float64), torch.tensor(5)

    monkeypatch.setattr(loop, "accumulated_update", scripted)
    cfg = tiny_run(tmp_path, synthetic_splits, "per-image", batch_size=50, grad_accum=2)
    (record,) = train(ModelConfig(hidden=(8,)), cfg, DataConfig(), data=synthetic_splits).history
    assert (record["train_loss"], record["train_accuracy"]) == (30 / 256, 15 / 256)


@pytest.mark.parametrize(("activation", "dead"), [("relu", None), ("tanh", "n/a")])
def test_each_epoch_logs_its_record(
    tmp_path: Path, synthetic_splits: MNISTSplits, caplog: pytest.LogCaptureFixture, activation: str, dead: str | None
) -> None:
    cfg = tiny_run(tmp_path, synthetic_splits, activation)
    with caplog.at_level("INFO", logger="training.train"):
        (r,) = train(ModelConfig(hidden=(8,), activation=activation), cfg, DataConfig(), data=synthetic_splits).history
    assert (r["dead_relu_fraction"] is None) == (dead == "n/a")
    dead = dead or f"{r['dead_relu_fraction']:.3f}"
    assert (
        f"epoch 1: train loss {r['train_loss']:.4f} acc {r['train_accuracy']:.4f} | val loss {r['val_loss']:.4f} "
        f"acc {r['val_accuracy']:.4f} | dead relu {dead} | {r['epoch_seconds']:.2f}s"
    ) in caplog.messages


def test_a_second_save_with_nothing_new_leaves_best_pt_as_it_was(tmp_path: Path) -> None:
    best = BestCheckpoint(tmp_path / "best.pt")
    assert best.offer(0.5, lambda: {"model": {"w": torch.ones(2)}, "epoch": 1})
    best.save()
    best.save()
    assert torch.equal(torch.load(tmp_path / "best.pt", weights_only=True)["model"]["w"], torch.ones(2))
