"""Data splits and augmentation: what each rule promises, for any size, seed and offset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.data import (
    DataConfig,
    _open,
    _to_split,
    binary_targets,
    load_mnist,
    random_offsets,
    random_shift,
    shift_images,
    split_indices,
)


@given(
    n=st.integers(2, 3000),
    val_fraction=st.floats(0.01, 0.99),
    split_seed=st.integers(0, 2**31 - 1),
    global_seed=st.integers(0, 2**31 - 1),
    subset=st.one_of(st.none(), st.integers(1, 3000)),
)
def test_splits_never_overlap_and_follow_only_the_split_seed(
    n: int, val_fraction: float, split_seed: int, global_seed: int, subset: int | None
) -> None:
    val_size = max(1, min(n - 1, round(n * val_fraction)))
    torch.manual_seed(global_seed)
    train, val = split_indices(n, val_size, split_seed, subset)
    assert len(val) == val_size
    assert len(train) == (n - val_size if subset is None else min(subset, n - val_size))
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert len(set(train.tolist())) == len(train)
    assert all(0 <= i < n for i in [*train.tolist(), *val.tolist()])
    torch.manual_seed(global_seed + 1)
    again_train, again_val = split_indices(n, val_size, split_seed, subset)
    assert torch.equal(val, again_val)
    assert torch.equal(train, again_train)


def test_the_split_seed_changes_the_split() -> None:
    assert not torch.equal(split_indices(1000, 100, 0)[1], split_indices(1000, 100, 1)[1])


@pytest.mark.data
def test_load_mnist_takes_its_splits_from_split_indices(mnist_root: Path) -> None:
    cfg = DataConfig(root=str(mnist_root), val_size=500, split_seed=3, train_subset=700, download=False)
    splits = load_mnist(cfg)
    full = _to_split(_open(cfg.root, train=True, download=False))
    train_idx, val_idx = split_indices(len(full), 500, 3, 700)
    assert torch.equal(splits.val.x, full.x[val_idx])
    assert torch.equal(splits.val.y, full.y[val_idx])
    assert torch.equal(splits.train.x, full.x[train_idx])
    assert torch.equal(splits.train.y, full.y[train_idx])
    assert len(splits.test) == 10_000
    assert splits.train.x.dtype == torch.float32
    assert splits.train.x.shape == (700, 784)
    raw = _open(cfg.root, train=True, download=False).data  # uint8 (60000, 28, 28)
    torch.testing.assert_close(full.x[:5], raw[:5].reshape(5, 784).float() / 255, rtol=0, atol=0)


def reference_shift(image: np.ndarray, down: int, right: int) -> np.ndarray:
    """The same image moved by (down, right), zero-filled: out[r, c] = image[r - down, c - right]."""
    out = np.zeros_like(image)
    for r in range(28):
        for c in range(28):
            if 0 <= r - down < 28 and 0 <= c - right < 28:
                out[r, c] = image[r - down, c - right]
    return out


@settings(max_examples=50)
@given(
    max_shift=st.integers(1, 4),
    offsets=st.lists(st.tuples(st.integers(-4, 4), st.integers(-4, 4)), min_size=1, max_size=4),
    seed=st.integers(0, 1000),
)
def test_a_shift_moves_the_ink_by_exactly_its_offsets_on_both_axes(
    max_shift: int, offsets: list[tuple[int, int]], seed: int
) -> None:
    offsets = [(max(-max_shift, min(max_shift, d)), max(-max_shift, min(max_shift, r))) for d, r in offsets]
    images = np.random.default_rng(seed).random((len(offsets), 28, 28), dtype=np.float32)
    down = torch.tensor([d for d, _ in offsets])
    right = torch.tensor([r for _, r in offsets])
    shifted = shift_images(torch.from_numpy(images).reshape(-1, 784), down, right, max_shift).reshape(-1, 28, 28)
    for i, (d, r) in enumerate(offsets):
        np.testing.assert_array_equal(shifted[i].numpy(), reference_shift(images[i], d, r))


def test_random_offsets_cover_every_pair_in_range_independently() -> None:
    down, right = random_offsets(4000, 2, torch.Generator().manual_seed(0))
    pairs = set(zip(down.tolist(), right.tolist(), strict=True))
    assert pairs == {(d, r) for d in range(-2, 3) for r in range(-2, 3)}  # both axes, all 25 combinations
    for axis in (down, right):
        counts = torch.bincount(axis + 2, minlength=5)
        assert counts.min() > 4000 / 5 * 0.85  # uniform within sampling noise


def test_random_offsets_without_a_generator_are_drawn_on_the_cpu() -> None:
    down, right = random_offsets(500, 1)
    assert down.device.type == right.device.type == "cpu"
    assert set(down.tolist()) == set(right.tolist()) == {-1, 0, 1}


@pytest.mark.parametrize("max_shift", [1, 3])
def test_random_shift_is_shift_images_with_random_offsets(max_shift: int) -> None:
    x = torch.rand(64, 784)
    down, right = random_offsets(64, max_shift, torch.Generator().manual_seed(7))
    expected = shift_images(x, down, right, max_shift)
    assert torch.equal(random_shift(x, max_shift, torch.Generator().manual_seed(7)), expected)
    assert not torch.equal(expected, x)


def test_no_shift_draws_no_random_numbers() -> None:
    x = torch.rand(8, 784)
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    assert random_shift(x, 0, generator) is x
    assert torch.equal(generator.get_state(), state)  # the epoch's shuffle stays as it was without augmentation


def test_binary_targets_mark_the_positive_digits() -> None:
    y = torch.tensor([0, 1, 2, 3, 9, 5])
    assert binary_targets(y, (0, 1, 2)).tolist() == [[1.0], [1.0], [1.0], [0.0], [0.0], [0.0]]
    assert binary_targets(y, (5, 9)).squeeze(1).tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert binary_targets(y, (0,)).dtype == torch.float32


def test_load_mnist_asks_torchvision_to_download_as_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import training.data as data

    asked = []

    def no_network(root: str, train: bool, download: bool) -> None:
        asked.append((train, download))
        raise RuntimeError("no network here")

    monkeypatch.setattr(data, "MNIST", no_network)
    for download in (True, False):
        with pytest.raises(data.DataNotFoundError):
            load_mnist(DataConfig(root=str(tmp_path), download=download))
    assert asked == [(True, True), (True, False)]
