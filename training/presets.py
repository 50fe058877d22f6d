"""Named networks: a model shape plus the training settings that go with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model import ModelConfig


@dataclass(frozen=True)
class Preset:
    model: ModelConfig
    train: dict[str, Any] = field(default_factory=dict)  # overrides of TrainConfig's defaults
    about: str = ""
    # Test accuracy below which `training.export` refuses the run unless --force: a floor that says the run
    # learned (the shipped models: default 99.46%, fast 99.06%, pigeon 98.63%, mnist-nn 97.03%), not a target.
    accuracy_floor: float = 0.95


def default_run_name(preset: str, dry_run: bool) -> str:
    """A run's folder (and exported model) name when none is given: a dry run gets its own, so that it never
    replaces a real run's checkpoints or the model exported from them."""
    return f"{preset}-dry-run" if dry_run else preset


PRESETS: dict[str, Preset] = {
    "pigeon": Preset(
        ModelConfig(hidden=(30,), activation="relu", head="sigmoid"),
        {"optimizer": "adam", "lr": 1e-3, "epochs": 5, "batch_size": 64},
        "784-30-1, sigmoid output: is the digit smaller than 3? (23,581 parameters)",
        accuracy_floor=0.97,
    ),
    "mnist-nn": Preset(
        ModelConfig(hidden=(50,), activation="relu", head="softmax"),
        {"optimizer": "adam", "lr": 1e-3, "epochs": 5, "batch_size": 64},
        "784-50-10 ReLU softmax, Adam lr 1e-3: the primer's network (96.1% validation accuracy)",
    ),
    "fast": Preset(
        ModelConfig(hidden=(512, 256), activation="relu", dropout=0.2, head="softmax"),
        {
            "optimizer": "adamw",
            "lr": 2e-3,
            "weight_decay": 1e-4,
            "schedule": "onecycle",
            "epochs": 25,
            "batch_size": 128,
            "augment_shift": 2,
        },
        "784-512-256-10 ReLU, dropout 0.2, AdamW + one-cycle, +-2 px shifts: 99.06%, and 1.7x the images per second "
        "of `default` (the distorted preset) in batches of 256",
        accuracy_floor=0.985,
    ),
    "distorted": Preset(
        ModelConfig(hidden=(800, 800), activation="relu", dropout=0.0, head="softmax"),
        {
            "optimizer": "adamw",
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "schedule": "onecycle",
            "epochs": 72,
            "batch_size": 128,
            "augment_rotate": 10.0,
            "augment_scale": 0.1,
            "augment_translate": 2.0,
            "elastic_alpha": 1.0,
            "elastic_sigma": 4.0,
            "keep": "last",
        },
        "784-800-800-10 ReLU, AdamW + one-cycle, each batch distorted: +-10 deg, +-10% per axis, +-2 px, elastic "
        "(1 px RMS, sigma 4 px); keeps the last epoch",
        accuracy_floor=0.99,
    ),
    "deep": Preset(
        ModelConfig(hidden=(256, 256, 256, 256), activation="leaky_relu", dropout=0.1, head="softmax"),
        {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "schedule": "cosine", "epochs": 10},
        "four hidden layers of 256 leaky-ReLU units",
    ),
    "maxout": Preset(
        ModelConfig(hidden=(240, 240), activation="maxout", maxout_pieces=5, dropout=0.2, head="softmax"),
        {"optimizer": "adam", "lr": 1e-3, "schedule": "cosine", "epochs": 10},
        "two maxout layers of 240 units x 5 pieces",
    ),
}
