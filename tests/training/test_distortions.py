"""Affine and elastic distortions of training batches: what each promises, on the CPU and (where present) CUDA."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from hypothesis import given, settings
from hypothesis import strategies as st

from training.data import (
    DataConfig,
    Distortion,
    MNISTSplits,
    distort_images,
    elastic_field,
    identity_affine,
    load_test_split,
    noise_spacing,
    random_affine,
    random_distort,
    shift_images,
    smoothing_matrix,
)
from training.errors import ConfigError
from training.model import ModelConfig
from training.presets import PRESETS
from training.train import TrainConfig, build_parser, configs_from_args, train

FULL = Distortion(rotate=10, scale=0.1, translate=2, elastic_alpha=1.5, elastic_sigma=4)
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA: needs an NVIDIA GPU and a CUDA build of torch"
)


def devices() -> list:
    return ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, needs_cuda])]


# identity at zero strength


def test_no_distortion_returns_the_batch_and_draws_nothing() -> None:
    x = torch.rand(8, 784)
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    assert random_distort(x, Distortion(), generator) is x
    assert torch.equal(generator.get_state(), state)  # a run without distortions keeps its shuffles and weights


@pytest.mark.parametrize("device", devices())
def test_the_identity_map_and_a_zero_field_give_the_images_back(device: str) -> None:
    x = torch.rand(16, 784, device=device)
    torch.testing.assert_close(distort_images(x, identity_affine(16, device)), x, rtol=0, atol=1e-5)
    zero = torch.zeros(16, 28, 28, 2, device=device)
    torch.testing.assert_close(distort_images(x, identity_affine(16, device), zero), x, rtol=0, atol=1e-5)


def test_zero_ranges_draw_identity_maps_and_zero_alpha_a_zero_field() -> None:
    generator = torch.Generator().manual_seed(0)
    torch.testing.assert_close(random_affine(32, 0, 0, 0, generator), identity_affine(32), rtol=0, atol=0)
    assert torch.equal(elastic_field(4, 0.0, 4.0, generator), torch.zeros(4, 28, 28, 2))


# the geometry: units and directions


@settings(max_examples=30)
@given(down=st.integers(-3, 3), right=st.integers(-3, 3), seed=st.integers(0, 1000))
def test_a_constant_field_of_whole_pixels_is_exactly_a_shift(down: int, right: int, seed: int) -> None:
    """The field is in pixels: reading every pixel from (x - right, y - down) moves the ink right and down."""
    x = torch.from_numpy(np.random.default_rng(seed).random((3, 784), dtype=np.float32))
    field = torch.tensor([-right, -down], dtype=torch.float32).expand(3, 28, 28, 2)
    moved = distort_images(x, identity_affine(3), field)
    expected = shift_images(x, torch.full((3,), down), torch.full((3,), right), 3)
    torch.testing.assert_close(moved, expected, rtol=0, atol=1e-5)


def test_a_quarter_turn_about_the_centre_is_rot90() -> None:
    x = torch.rand(4, 784)
    quarter = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]).expand(4, 2, 3)  # input = R(90 deg) @ output
    turned = distort_images(x, quarter).view(4, 28, 28)
    torch.testing.assert_close(turned, torch.rot90(x.view(4, 28, 28), k=1, dims=(1, 2)), rtol=0, atol=1e-5)


def test_drawn_maps_stay_within_their_ranges_and_reach_their_ends() -> None:
    theta = random_affine(20_000, rotate=10, scale=0.1, translate=2, generator=torch.Generator().manual_seed(1))
    linear = theta[:, :, :2]  # R(angle) @ diag(1 / sx, 1 / sy)
    angle = torch.rad2deg(torch.atan2(linear[:, 1, 0], linear[:, 0, 0]))
    stretch = 1 / linear.norm(dim=1)  # (N, 2): each column's length is 1 / s
    shift_px = theta[:, :, 2] * 28 / 2
    for drawn, bound in ((angle, 10.0), (stretch - 1, 0.1), (shift_px, 2.0)):
        assert drawn.abs().max() <= bound * (1 + 1e-5)
        assert drawn.max() > bound * 0.99
        assert drawn.min() < -bound * 0.99
    assert abs(float(torch.corrcoef(stretch.T)[0, 1])) < 0.05  # the two axes are stretched independently


# the elastic field: size and smoothness


def test_the_smoothing_matrix_is_conv2d_with_a_gaussian_kernel() -> None:
    """Against the reference where the noise is drawn at every pixel (sigma < 4): a valid conv2d with the outer
    product of the Gaussian kernel, scaled to unit variance."""
    sigma = 3.0
    assert noise_spacing(sigma) == 1
    t = torch.arange(-9, 10, dtype=torch.float32)  # 3 sigma either side
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    noise = torch.randn(5, 1, 28 + 18, 28 + 18, generator=torch.Generator().manual_seed(0))
    reference = F.conv2d(noise, torch.outer(k, k).view(1, 1, 19, 19)) / (k**2).sum()  # (5, 1, 28, 28)
    m = smoothing_matrix(sigma)
    assert m.shape == (28 + 18, 28)
    torch.testing.assert_close(m.T @ noise[:, 0] @ m, reference[:, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("sigma", "spacing", "points"), [(1.0, 1, 34), (4.0, 2, 27), (6.0, 3, 22)])
def test_smoother_fields_draw_fewer_noise_points(sigma: float, spacing: int, points: int) -> None:
    m = smoothing_matrix(sigma)
    assert noise_spacing(sigma) == spacing
    assert m.shape == (points, 28)
    torch.testing.assert_close(m.norm(dim=0), torch.ones(28))


@pytest.mark.parametrize(("alpha", "sigma"), [(1.0, 4.0), (2.0, 6.0), (0.5, 2.0)])
def test_the_field_has_its_size_everywhere_and_no_drift(alpha: float, sigma: float) -> None:
    field = elastic_field(2000, alpha, sigma, torch.Generator().manual_seed(0))
    assert field.shape == (2000, 28, 28, 2)
    rms = field.pow(2).mean(dim=0).sqrt()  # (28, 28, 2): per pixel and axis, over the 2000 fields
    assert float(rms.mean()) == pytest.approx(alpha, rel=0.02)
    assert float(rms[:3].mean()) == pytest.approx(float(rms[12:16].mean()), rel=0.05)  # the border as the middle
    assert float(field.mean().abs()) < 0.02 * alpha


@pytest.mark.parametrize("sigma", [2.0, 4.0, 6.0])
def test_the_field_is_as_smooth_as_its_gaussian(sigma: float) -> None:
    """Gaussian-smoothed white noise correlates exp(-d^2 / (4 sigma^2)) at d pixels: nearly 1 next door, and
    its neighbours differ far less than its values (unsmoothed noise would differ by sqrt(2) times its size)."""
    field = elastic_field(1000, 1.0, sigma, torch.Generator().manual_seed(0))
    for d in (1, 2, 4, 8):
        for a, b in ((field[:, :, :-d], field[:, :, d:]), (field[:, :-d], field[:, d:])):  # along x, along y
            correlation = float((a * b).mean() / field.pow(2).mean())
            assert correlation == pytest.approx(math.exp(-(d**2) / (4 * sigma**2)), abs=0.03)
    step = (field[:, :, 1:] - field[:, :, :-1]).pow(2).mean().sqrt()
    assert float(step) < 1.2 / (math.sqrt(2) * sigma)  # sqrt(2 (1 - exp(-1/(4 s^2)))) ~ 1 / (sqrt(2) s)


def test_the_two_components_are_independent() -> None:
    field = elastic_field(1000, 1.0, 4.0, torch.Generator().manual_seed(0))
    assert abs(float((field[..., 0] * field[..., 1]).mean())) < 0.02


# labels untouched, images kept apart


def test_each_image_is_distorted_on_its_own_and_keeps_its_row() -> None:
    """Row i of the output depends on row i of the input alone: the batch's labels still describe it."""
    x = torch.rand(6, 784)
    theta = random_affine(6, 10, 0.1, 2, torch.Generator().manual_seed(0))
    field = elastic_field(6, 1.5, 4, torch.Generator().manual_seed(1))
    batch = distort_images(x, theta, field)
    for i in range(6):
        alone = distort_images(x[i : i + 1], theta[i : i + 1], field[i : i + 1])
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=0, atol=1e-6)
    reordered = distort_images(x.flip(0), theta.flip(0), field.flip(0))
    torch.testing.assert_close(reordered, batch.flip(0), rtol=0, atol=1e-6)


@pytest.mark.data
def test_the_distorted_presets_digits_keep_their_labels(mnist_root: Path) -> None:
    """The shipped fast model, never trained on these distortions, still reads the distorted test digits: the
    distortions change how a digit is written, not which digit it is."""
    test = load_test_split(DataConfig(root=str(mnist_root), download=False))
    x, y = test.x[:2000], test.y[:2000]
    model = torch.jit.load(Path(__file__).resolve().parents[2] / "models" / "fast" / "model.pt")
    distortion = TrainConfig(**PRESETS["distorted"].train).distortion
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
        distorted = float(
            (model(random_distort(x, distortion, torch.Generator().manual_seed(0))).argmax(1) == y).float().mean()
        )
    assert clean > 0.98
    assert distorted > 0.9
    assert distorted < clean  # they do change the images


# the same seed, the same batch


@pytest.mark.parametrize("device", devices())
def test_the_same_seed_gives_the_same_batch_and_another_seed_another(device: str) -> None:
    x = torch.rand(64, 784, device=device)

    def draw(seed: int) -> torch.Tensor:
        return random_distort(x, FULL, torch.Generator(device=device).manual_seed(seed))

    first = draw(0)
    assert first.device == x.device
    assert first.shape == x.shape
    assert first.dtype == x.dtype
    assert torch.equal(first, draw(0))
    assert not torch.equal(first, draw(1))
    assert not torch.equal(first, x)
    assert float(first.min()) >= 0.0
    assert float(first.max()) <= 1.0 + 1e-6


@pytest.mark.cuda
@needs_cuda
def test_cuda_resamples_as_the_cpu_does() -> None:
    x = torch.rand(32, 784)
    theta = random_affine(32, 10, 0.1, 2, torch.Generator().manual_seed(0))
    field = elastic_field(32, 1.5, 4, torch.Generator().manual_seed(1))
    on_gpu = distort_images(x.cuda(), theta.cuda(), field.cuda())
    torch.testing.assert_close(on_gpu.cpu(), distort_images(x, theta, field), rtol=0, atol=1e-5)
    m = smoothing_matrix(4.0)
    noise = torch.randn(8, m.shape[0], m.shape[0])
    torch.testing.assert_close((m.cuda().T @ noise.cuda() @ m.cuda()).cpu(), m.T @ noise @ m, rtol=1e-4, atol=1e-5)


# the training config, the CLI and the loop


@pytest.mark.parametrize(
    ("values", "option"),
    [
        ({"augment_rotate": -1.0}, "augment_rotate"),
        ({"augment_rotate": 181.0}, "augment_rotate"),
        ({"augment_scale": 1.0}, "augment_scale"),
        ({"augment_translate": 9.0}, "augment_translate"),
        ({"elastic_alpha": -0.5}, "elastic_alpha"),
        ({"elastic_sigma": 0.0}, "elastic_sigma"),
    ],
)
def test_a_bad_distortion_setting_names_its_option(values: dict, option: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{option}: got .*; allowed: "):
        TrainConfig(**values)


def test_the_distortion_flags_land_in_the_run_config() -> None:
    argv = ["--augment-rotate", "12", "--augment-scale", "0.15", "--augment-translate", "1.5"]
    argv += ["--elastic-alpha", "0.8", "--elastic-sigma", "5"]
    _, cfg, _, _ = configs_from_args(build_parser().parse_args(argv))
    assert cfg.distortion == Distortion(rotate=12, scale=0.15, translate=1.5, elastic_alpha=0.8, elastic_sigma=5)
    _, fast, _, _ = configs_from_args(build_parser().parse_args(["--preset", "fast"]))
    assert not fast.distortion.active  # the fast preset trains as it always did


def test_the_loop_distorts_every_batch_once_with_the_runs_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.train as loop

    rng = torch.Generator().manual_seed(0)
    split = lambda n: loop.Split(torch.rand(n, 784, generator=rng), torch.randint(0, 10, (n,), generator=rng))  # noqa: E731
    data = MNISTSplits(split(100), split(20), split(20))
    calls: list[tuple[int, Distortion]] = []

    def recording(x: torch.Tensor, distortion: Distortion, generator: torch.Generator | None = None):
        calls.append((x.shape[0], distortion))
        return random_distort(x, distortion, generator)

    monkeypatch.setattr(loop, "random_distort", recording)
    cfg = TrainConfig(epochs=2, batch_size=32, device="cpu", out_dir=str(tmp_path), run_name="d", **{
        "augment_rotate": 5.0, "elastic_alpha": 1.0})  # fmt: skip
    train(ModelConfig(hidden=(8,)), cfg, DataConfig(), data=data)
    assert [n for n, _ in calls] == [32, 32, 32, 4] * 2  # one call per update, on the update's images
    assert {d for _, d in calls} == {cfg.distortion}


@pytest.mark.data
def test_a_distorted_run_is_fixed_by_its_seed(tmp_path: Path, small_mnist: MNISTSplits) -> None:
    values = {"epochs": 1, "device": "cpu", "out_dir": str(tmp_path), "augment_rotate": 10.0, "elastic_alpha": 1.0}
    model_cfg = ModelConfig(hidden=(32,))

    def weights(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
        cfg = TrainConfig(run_name=name, seed=seed, **values)
        return train(model_cfg, cfg, DataConfig(), data=small_mnist).model.state_dict()

    first, second, other = weights("a"), weights("b"), weights("c", seed=1)
    for a, b in zip(first.values(), second.values(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first["head.weight"], other["head.weight"])
