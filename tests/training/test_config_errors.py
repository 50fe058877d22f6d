"""Every bad setting fails at once, naming the option and what it accepts."""

from __future__ import annotations

import pytest
import torch

from training.data import DataConfig
from training.errors import ConfigError
from training.model import ModelConfig
from training.train import TrainConfig, main, resolve_device


@pytest.mark.parametrize(
    ("build", "option"),
    [
        (lambda: ModelConfig(activation="swish"), "activation"),
        (lambda: ModelConfig(hidden=(50, -3)), "hidden"),
        (lambda: ModelConfig(hidden=(0,)), "hidden"),
        (lambda: ModelConfig(head="relu"), "head"),
        (lambda: ModelConfig(dropout=1.0), "dropout"),
        (lambda: ModelConfig(maxout_pieces=1), "maxout_pieces"),
        (lambda: TrainConfig(grad_accum=0), "grad_accum"),
        (lambda: TrainConfig(optimizer="rmsprop"), "optimizer"),
        (lambda: TrainConfig(batch_size=0), "batch_size"),
        (lambda: TrainConfig(epochs=0), "epochs"),
        (lambda: TrainConfig(preset="resnet"), "preset"),
        (lambda: TrainConfig(keep="first"), "keep"),
        (lambda: DataConfig(positive_digits=(3, 10)), "positive_digits"),
        (lambda: DataConfig(positive_digits=()), "positive_digits"),
        (lambda: DataConfig(positive_digits=tuple(range(10))), "positive_digits"),
    ],
)
def test_bad_setting_names_the_option(build, option: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{option}: got .*; allowed: "):
        build()


def test_cuda_requested_without_a_gpu_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device: got 'cuda' but no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_cli_reports_bad_setting_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--preset", "mnist-nn", "--grad-accum", "0"]) == 2
    assert "grad_accum: got 0; allowed: an integer >= 1" in capsys.readouterr().err


def test_cli_rejects_unknown_activation(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--activation", "swish"])
    assert exc.value.code == 2
    assert "--activation: invalid choice: 'swish'" in capsys.readouterr().err


def test_missing_mnist_says_where_to_put_the_files(tmp_path) -> None:
    from training.data import DataNotFoundError, load_mnist

    with pytest.raises(DataNotFoundError, match=r"MNIST/raw.*train-images-idx3-ubyte.*MNIST_ROOT"):
        load_mnist(DataConfig(root=str(tmp_path), download=False))
