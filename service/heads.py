"""The model's output heads: logits -> probabilities and labels, with softmax or sigmoid.

`OUTPUT_ACTIVATIONS` are what a request may ask for (`activation`); a model's `head` in its metadata is its
default. Not training's hidden-layer activations (training/model.py's HIDDEN_ACTIVATIONS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Activation = Literal["softmax", "sigmoid"]
OUTPUT_ACTIVATIONS: tuple[Activation, ...] = ("softmax", "sigmoid")


@dataclass
class Predictions:
    probabilities: np.ndarray  # (N, k) float32
    label_indices: np.ndarray  # (N,) int64, into metadata.labels


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * logits) + 1.0)  # overflow-free form of 1 / (1 + exp(-x))


def probabilities(logits: np.ndarray, activation: Activation, num_outputs: int) -> Predictions:
    """softmax: one probability per label, summing to 1; sigmoid: one independent probability per output.

    For the one-output (binary) head, softmax is the two-class form [1 - p, p] with p = sigmoid(logit).
    Labels come from the logits: probabilities round to ties (sigmoid saturates at 1.0 past a logit of ~17)
    where the logits still decide.
    """
    if num_outputs == 1:
        p = sigmoid(logits)  # (N, 1)
        labels = (logits[:, 0] > 0).astype(np.int64)
        probs = np.concatenate([1.0 - p, p], axis=1) if activation == "softmax" else p
        return Predictions(probs, labels)
    labels = logits.argmax(axis=1)  # before softmax, which works in place
    probs = softmax(logits) if activation == "softmax" else sigmoid(logits)
    return Predictions(probs, labels)


def output_width(head: Activation, labels: int) -> int:
    """Probabilities per image under `head`, as the v2 metadata and Triton's configuration declare them: one per
    label with softmax; -1 (1 or 2, by the activation asked) for the one-output sigmoid model."""
    return labels if head == "softmax" else -1
