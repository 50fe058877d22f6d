"""A configurable multilayer perceptron whose input is raw pixels: normalization lives inside the graph.

Input contract (kept in every model's metadata): float32, shape (N, 784), values in [0, 1]
(uint8 pixel / 255), 28x28 row-major, white digit on a black background as in MNIST.
Output: logits, (N, 10) for the softmax head, (N, 1) for the sigmoid ("pigeon") head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import require

HIDDEN_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "maxout")
HEADS = ("softmax", "sigmoid")
NUM_PIXELS = 28 * 28
NUM_CLASSES = 10
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


@dataclass(frozen=True)
class ModelConfig:
    hidden: tuple[int, ...] = (50,)  # hidden layer widths; () is logistic regression
    activation: str = "relu"
    leaky_slope: float = 0.01  # leaky_relu only
    maxout_pieces: int = 2  # maxout only: each unit is the max of this many linear pieces
    dropout: float = 0.0  # after every hidden layer
    head: str = "softmax"  # softmax: 10 classes, cross-entropy; sigmoid: 1 output, BCE-with-logits

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        require(self.activation in HIDDEN_ACTIVATIONS, "activation", ", ".join(HIDDEN_ACTIVATIONS), self.activation)
        require(self.head in HEADS, "head", ", ".join(HEADS), self.head)
        require(
            all(isinstance(h, int) and h > 0 for h in self.hidden),
            "hidden",
            "positive layer widths (or none at all)",
            self.hidden,
        )
        require(0.0 <= self.dropout < 1.0, "dropout", "0 <= dropout < 1", self.dropout)
        require(self.leaky_slope >= 0.0, "leaky_slope", "a non-negative slope", self.leaky_slope)
        require(self.maxout_pieces >= 2, "maxout_pieces", "an integer >= 2", self.maxout_pieces)

    @property
    def out_features(self) -> int:
        return NUM_CLASSES if self.head == "softmax" else 1


class Normalize(nn.Module):
    """(x - mean) / std with MNIST's statistics, so exported graphs take raw [0, 1] pixels."""

    def __init__(self, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Maxout(nn.Module):
    """A linear layer with `pieces` outputs per unit, keeping the largest (Goodfellow et al., 2013)."""

    def __init__(self, in_features: int, out_features: int, pieces: int) -> None:
        super().__init__()
        self.out_features = out_features
        self.pieces = pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)  # (N, out * pieces)
        return z.view(z.shape[0], self.out_features, self.pieces).amax(dim=-1)  # (N, out)


def _hidden_layer(in_features: int, out_features: int, cfg: ModelConfig) -> nn.Module:
    if cfg.activation == "maxout":
        return Maxout(in_features, out_features, cfg.maxout_pieces)
    activation: nn.Module = {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "leaky_relu": lambda: nn.LeakyReLU(cfg.leaky_slope),
    }[cfg.activation]()
    return nn.Sequential(nn.Linear(in_features, out_features), activation)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.normalize = Normalize()
        widths = (NUM_PIXELS, *cfg.hidden)
        self.hidden = nn.ModuleList(_hidden_layer(a, b, cfg) for a, b in zip(widths[:-1], widths[1:]))
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(widths[-1], cfg.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 784) float32 pixels in [0, 1] -> (N, out_features) logits."""
        h = self.normalize(x)
        for layer in self.hidden:
            h = self.dropout(layer(h))
        return self.head(h)

    @torch.no_grad()
    def hidden_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each hidden layer's output, (N, width) per layer: what dead-unit monitoring looks at."""
        outputs = []
        h = self.normalize(x)
        for layer in self.hidden:
            h = layer(h)
            outputs.append(h)
        return outputs


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def dead_unit_fraction(model: MLP, x: torch.Tensor) -> float | None:
    """Fraction of hidden units never active (output <= 0) on any row of `x`.

    Defined for relu and leaky_relu, whose units can die; None for other activations or no hidden layer.
    """
    if model.config.activation not in ("relu", "leaky_relu") or not model.config.hidden:
        return None
    was_training = model.training
    model.eval()
    dead = total = 0
    for h in model.hidden_activations(x):
        dead += int((h <= 0).all(dim=0).sum())
        total += h.shape[1]
    model.train(was_training)
    return dead / total


def probabilities(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """softmax over classes, or an independent sigmoid per output."""
    return torch.softmax(logits, dim=-1) if activation == "softmax" else torch.sigmoid(logits)
