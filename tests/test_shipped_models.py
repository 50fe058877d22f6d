"""The models committed in models/ are what their metadata says, so the service can start on a fresh clone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import MODELS_DIR

SHIPPED = ("default", "fast", "pigeon", "mnist-nn")
TARGETS = {"default": 0.994, "fast": 0.985, "mnist-nn": 0.961, "pigeon": 0.98}  # the issues' test-accuracy targets


@pytest.mark.parametrize("name", SHIPPED)
def test_metadata_hashes_match_the_files(name: str) -> None:
    folder = MODELS_DIR / name
    meta = json.loads((folder / "metadata.json").read_text())
    assert sorted(meta["files"]) == ["model.onnx", "model.pt"]
    for file, entry in meta["files"].items():
        data = (folder / file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], file
        assert len(data) == entry["bytes"], file
    assert meta["version"] == meta["files"]["model.onnx"]["sha256"][:12]
    assert meta["metrics"]["test_accuracy"] >= TARGETS[name]
    assert meta["commands"]["train"][:3] == ["python", "-m", "training.train"]
    assert meta["commands"]["export"][:3] == ["python", "-m", "training.export"]


@pytest.mark.parametrize("name", SHIPPED)
def test_onnx_and_torchscript_agree(name: str) -> None:
    import torch

    folder = MODELS_DIR / name
    x = np.random.default_rng(0).random((32, 784), dtype=np.float32)
    (onnx_logits,) = ort.InferenceSession(folder / "model.onnx", providers=["CPUExecutionProvider"]).run(
        None, {"pixels": x}
    )
    with torch.no_grad():
        script_logits = torch.jit.load(folder / "model.pt")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(onnx_logits, script_logits, atol=1e-4)


def test_no_half_written_model_folders() -> None:
    leftovers = [p.name for p in Path(MODELS_DIR).iterdir() if p.name.startswith((".tmp-", ".old-"))]
    assert leftovers == []
