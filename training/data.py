"""MNIST loaded once into tensors, with a fixed validation split and the binary ("pigeon") targets, and the
training batches' augmentations: whole-pixel shifts, and affine and elastic distortions, each one call per batch
on the batch's device, drawn from the run's generator.

Why tensors and not a `DataLoader(ToTensor())` pipeline: decoding 60k PIL images per epoch costs ~10 s
on two cores, indexing a preloaded tensor ~0.15 s (see `python -m benchmarks.training`).
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class Distortion:
    """Random affine and elastic distortions of training images (Simard et al. 2003; Ciresan et al. 2010), each
    image its own, drawn per batch. All zero (the default) is off: images pass through and nothing is drawn."""

    rotate: float = 0.0  # degrees: each image turned by U(-rotate, rotate) about its centre
    scale: float = 0.0  # fraction: each axis stretched by 1 + U(-scale, scale), the two axes independently
    translate: float = 0.0  # pixels: each axis moved by U(-translate, translate), sub-pixel (bilinear)
    elastic_alpha: float = 0.0  # pixels: RMS per axis of the elastic displacement field; 0 = no elastic part
    elastic_sigma: float = 4.0  # pixels: width of the Gaussian that smooths the field (larger = smoother)

    def __post_init__(self) -> None:
        require(0 <= self.rotate <= 180, "augment_rotate", "0..180 degrees", self.rotate)
        require(0 <= self.scale < 1, "augment_scale", "a fraction, 0 <= scale < 1", self.scale)
        require(0 <= self.translate <= 8, "augment_translate", "0..8 pixels", self.translate)
        require(0 <= self.elastic_alpha <= 8, "elastic_alpha", "0..8 pixels", self.elastic_alpha)
        require(0 < self.elastic_sigma <= 8, "elastic_sigma", "0 < sigma <= 8 pixels", self.elastic_sigma)

    @property
    def affine(self) -> bool:
        return self.rotate > 0 or self.scale > 0 or self.translate > 0

    @property
    def active(self) -> bool:
        return self.affine or self.elastic_alpha > 0


def smoothing_matrix(sigma: float, size: int = 28, device: torch.device | str = "cpu") -> torch.Tensor:
    """(Q, size): column j is a Gaussian of `sigma` pixels centred on pixel j and cut at 3 sigma, sampled at Q
    noise points that reach 3 sigma past either edge, `noise_spacing(sigma)` pixels apart, scaled to unit length.

    `noise @ M` smooths each row of unit white noise (Q points) into `size` values of unit variance whose
    correlation at d pixels is exp(-d^2 / (4 sigma^2)): the Gaussian blur of a field, as a valid convolution,
    with no darker border. One matmul: a 1 x 25 conv2d over 28 x 28 fields was ten times slower on the CPU.
    """
    spacing, reach = noise_spacing(sigma), math.ceil(3 * sigma)
    points = torch.arange(-reach, size - 1 + reach + spacing, spacing, device=device, dtype=torch.float32)  # (Q,)
    pixels = torch.arange(size, device=device, dtype=torch.float32)  # (S,)
    offset = pixels.view(1, -1) - points.view(-1, 1)  # (Q, S)
    m = torch.exp(-0.5 * (offset / sigma) ** 2) * (offset.abs() <= reach)  # the kernel, cut at 3 sigma
    return m / m.norm(dim=0, keepdim=True)


def noise_spacing(sigma: float) -> int:
    """Pixels between the elastic field's noise points: a field smoothed over `sigma` pixels needs no finer
    noise. At sigma / 2 apart the variance ripples by 2 exp(-4 pi^2) ~ 1e-17 between pixels (Poisson's sum),
    and the draws per field fall 4x at sigma 4, 9x at sigma 6: drawing them was most of the field's cost."""
    return max(1, math.floor(sigma / 2))


def elastic_field(
    n: int,
    alpha: float,
    sigma: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    size: int = 28,
) -> torch.Tensor:
    """(n, size, size, 2) displacements in pixels, (x, y) last as grid_sample reads them: white noise smoothed
    by a Gaussian of `sigma` pixels (the larger, the smoother), each component of RMS `alpha` pixels at every
    pixel, border included. Simard et al. (2003) smooth uniform noise in [-1, 1] and multiply by their alpha:
    their alpha 34, sigma 4 is an RMS of about 1.4 pixels here."""
    device = device or (generator.device if generator is not None else "cpu")
    m = smoothing_matrix(sigma, size, device)  # (Q, S), unit columns
    noise = torch.randn((n * 2, m.shape[0], m.shape[0]), generator=generator, device=device)  # (2N, Q, Q)
    smooth = m.T @ noise @ m  # (2N, S, S): unit variance along y, then along x
    return (smooth * alpha).view(n, 2, size, size).permute(0, 2, 3, 1)  # (N, S, S, 2)


def random_affine(
    n: int,
    rotate: float,
    scale: float,
    translate: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    size: int = 28,
) -> torch.Tensor:
    """(n, 2, 3) affine maps in grid_sample's normalized coordinates, from an output pixel to where it is read
    in the input: a rotation by U(-rotate, rotate) degrees, a stretch of each axis by 1 + U(-scale, scale) and
    a move of U(-translate, translate) pixels per axis."""
    device = device or (generator.device if generator is not None else "cpu")
    u = 2 * torch.rand((n, 5), generator=generator, device=device) - 1  # (N, 5) in [-1, 1)
    angle = torch.deg2rad(u[:, 0] * rotate)
    sx, sy = 1 + u[:, 1] * scale, 1 + u[:, 2] * scale  # how much larger the digit appears on each axis
    tx, ty = u[:, 3] * (2 * translate / size), u[:, 4] * (2 * translate / size)  # pixels -> normalized units
    cos, sin = torch.cos(angle), torch.sin(angle)
    # input = R(angle) @ diag(1/sx, 1/sy) @ output + t: a larger digit reads from a smaller patch
    row_x = torch.stack((cos / sx, -sin / sy, tx), dim=1)
    row_y = torch.stack((sin / sx, cos / sy, ty), dim=1)
    return torch.stack((row_x, row_y), dim=1)  # (N, 2, 3)


def identity_affine(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, 2, 3) maps that read every output pixel from where it is."""
    return torch.eye(2, 3, device=device).expand(n, 2, 3)


def distort_images(x: torch.Tensor, theta: torch.Tensor, field: torch.Tensor | None = None) -> torch.Tensor:
    """Resample each (N, 784) image once: output pixel p reads the input at theta @ p plus field(p) pixels,
    bilinearly, zero outside. `theta`: (N, 2, 3) normalized affine maps; `field`: (N, 28, 28, 2) or None."""
    n = x.shape[0]
    # F.affine_grid's own grid, as a batched matmul: affine_grid was 2-10x slower on the CPU for 28 x 28
    base = F.affine_grid(torch.eye(2, 3, device=x.device).unsqueeze(0), [1, 1, 28, 28], align_corners=False)
    theta = theta.to(x.dtype)
    grid = base.view(1, 784, 2) @ theta[:, :, :2].transpose(1, 2) + theta[:, :, 2].unsqueeze(1)  # (N, 784, 2)
    grid = grid.view(n, 28, 28, 2)  # (x, y) in [-1, 1] for each output pixel
    if field is not None:
        grid = grid + field * (2 / 28)  # pixels -> normalized units
    out = F.grid_sample(x.view(n, 1, 28, 28), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(n, 784)


def random_distort(x: torch.Tensor, distortion: Distortion, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each (N, 784) image through its own random affine map and elastic field, in one resampling on x's
    device, drawn from `generator` (which must live there too). An inactive `distortion` returns x and draws nothing."""
    if not distortion.active:
        return x
    d, n = distortion, x.shape[0]
    if d.affine:
        theta = random_affine(n, d.rotate, d.scale, d.translate, generator, x.device)
    else:
        theta = identity_affine(n, x.device)
    field = elastic_field(n, d.elastic_alpha, d.elastic_sigma, generator, x.device) if d.elastic_alpha > 0 else None
    return distort_images(x, theta, field)
