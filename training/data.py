"""MNIST loaded once into tensors, with a fixed validation split and the binary ("pigeon") targets.

Why tensors and not a `DataLoader(ToTensor())` pipeline: decoding 60k PIL images per epoch costs ~10 s
on two cores, indexing a preloaded tensor ~0.15 s (see `python -m benchmarks.training`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torchvision.datasets import MNIST

from .errors import ConfigError, require

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
NUM_TRAIN = 60_000


def default_root() -> str:
    """`MNIST_ROOT` when set, else `data/` (git-ignored)."""
    return os.environ.get("MNIST_ROOT", "data")


@dataclass(frozen=True)
class DataConfig:
    root: str = field(default_factory=default_root)
    val_size: int = 5_000  # carved from the 60k training set; the 10k test set is only for the final report
    split_seed: int = 0  # fixed apart from the training seed, so every run validates on the same images
    positive_digits: tuple[int, ...] = (0, 1, 2)  # binary head: "is this digit one of these?"
    train_subset: int | None = None  # keep only the first N training images (tests, dry runs)
    download: bool = True

    def __post_init__(self) -> None:
        digits = tuple(self.positive_digits)
        require(
            len(digits) > 0 and all(isinstance(d, int) and 0 <= d <= 9 for d in digits),
            "positive_digits",
            "a non-empty set of digits 0-9",
            self.positive_digits,
        )
        require(len(set(digits)) < 10, "positive_digits", "a proper subset of 0-9 (not all ten)", digits)
        object.__setattr__(self, "positive_digits", tuple(sorted(set(digits))))
        require(0 < self.val_size < NUM_TRAIN, "val_size", f"1..{NUM_TRAIN - 1}", self.val_size)
        if self.train_subset is not None:
            require(self.train_subset > 0, "train_subset", "a positive count or None", self.train_subset)


@dataclass
class Split:
    x: torch.Tensor  # (N, 784) float32 in [0, 1]
    y: torch.Tensor  # (N,) int64 digit labels

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class MNISTSplits:
    train: Split
    val: Split
    test: Split


class DataNotFoundError(ConfigError):
    """The MNIST files are absent and could not be downloaded."""


def _open(root: str, train: bool, download: bool) -> MNIST:
    try:
        return MNIST(root=root, train=train, download=download)
    except Exception as exc:  # torchvision raises RuntimeError or URLError depending on what failed
        raw = Path(root) / "MNIST" / "raw"
        raise DataNotFoundError(
            f"MNIST not found under {raw} and could not be downloaded ({exc.__class__.__name__}: {exc}). "
            f"Put the four files {', '.join(MNIST_FILES)} (uncompressed) in {raw}/, "
            "or point --data-root / MNIST_ROOT at a folder that has MNIST/raw/ inside."
        ) from exc


def _to_split(ds: MNIST) -> Split:
    x = ds.data.reshape(len(ds.data), 28 * 28).to(torch.float32).div_(255.0)  # (N, 784) in [0, 1]
    return Split(x, ds.targets.to(torch.int64))


def load_test_split(cfg: DataConfig, device: torch.device | str = "cpu") -> Split:
    """The official 10k test set, as tensors."""
    return _to_split(_open(cfg.root, train=False, download=cfg.download)).to(device)


def split_indices(
    n: int, val_size: int, split_seed: int, train_subset: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) indices into `n` images: disjoint, and a function of `split_seed` alone."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    if train_subset is not None:
        train_idx = train_idx[:train_subset]
    return train_idx, val_idx


def load_mnist(cfg: DataConfig, device: torch.device | str = "cpu") -> MNISTSplits:
    """Train/validation/test splits as tensors on `device`; the validation split depends only on `split_seed`."""
    full = _to_split(_open(cfg.root, train=True, download=cfg.download))
    train_idx, val_idx = split_indices(len(full), cfg.val_size, cfg.split_seed, cfg.train_subset)
    return MNISTSplits(
        train=Split(full.x[train_idx], full.y[train_idx]).to(device),
        val=Split(full.x[val_idx], full.y[val_idx]).to(device),
        test=load_test_split(cfg, device),
    )


def binary_targets(y: torch.Tensor, positive_digits: tuple[int, ...]) -> torch.Tensor:
    """(N,) digit labels -> (N, 1) float targets, 1.0 where the digit is in `positive_digits`."""
    positives = torch.tensor(positive_digits, device=y.device)
    return torch.isin(y, positives).to(torch.float32).unsqueeze(1)


def random_offsets(
    n: int, max_shift: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(down, right): n whole-pixel offsets per axis, each drawn uniformly from [-max_shift, max_shift], on the
    generator's device (a CUDA generator draws them on the GPU: no copy from the host per step)."""
    span, device = 2 * max_shift + 1, (generator.device if generator is not None else "cpu")
    right = max_shift - torch.randint(0, span, (n,), generator=generator, device=device)
    down = max_shift - torch.randint(0, span, (n,), generator=generator, device=device)
    return down, right


def shift_images(x: torch.Tensor, down: torch.Tensor, right: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Move each (N, 784) image `down[i]` rows and `right[i]` columns (|offset| <= max_shift), zero-filled."""
    n = x.shape[0]
    padded = F.pad(x.view(n, 1, 28, 28), (max_shift,) * 4)  # (N, 1, 28+2s, 28+2s)
    top = (max_shift - down).to(x.device).view(n, 1)  # row of `padded` that becomes the output's first row
    left = (max_shift - right).to(x.device).view(n, 1)
    rows = (top + torch.arange(28, device=x.device)).view(n, 1, 28, 1)  # (N, 1, 28, 1)
    cols = (left + torch.arange(28, device=x.device)).view(n, 1, 1, 28)  # (N, 1, 1, 28)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    return padded[batch, 0, rows, cols].reshape(n, 784)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each (N, 784) image by a random whole-pixel offset in [-max_shift, max_shift] on each axis."""
    if max_shift <= 0:
        return x
    down, right = random_offsets(x.shape[0], max_shift, generator)
    return shift_images(x, down, right, max_shift)
