"""The in-process ceiling: ONNX Runtime called directly (no HTTP), at the batch sizes the load tests use, on
the execution provider the server would use (MNIST_DEVICE, as the service reads it: CUDA when present).

python -m loadtests.baselines.ort_ceiling --batch-sizes 1 64 256
python -m loadtests.baselines.ort_ceiling --device cpu        # the CPU's ceiling on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from service.artifact import DEVICES
from service.runtime import ModelRuntime, RuntimeConfig
from service.settings import runtime_config


def measure(runtime: ModelRuntime, batch: int, seconds: float = 2.0) -> dict[str, float]:
    x = np.random.default_rng(0).random((batch, 784), dtype=np.float32)
    runtime.logits(x)
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        runtime.logits(x)
        calls += 1
    return {"batch": batch, "us_per_call": 1e6 * elapsed / calls, "images_per_s": calls * batch / elapsed}


def server_device() -> str:
    """The device the server will ask for: MNIST_DEVICE as the service reads it (auto by default)."""
    return runtime_config(os.environ).device


def ceiling(
    batch_sizes: list[int],
    model: str = "default",
    threads: int = 1,
    device: str | None = None,
    seconds: float = 2.0,
    cuda_tf32: bool = False,
) -> list[dict[str, float | str]]:
    """One row per batch size, each naming the execution provider ONNX Runtime actually used."""
    config = RuntimeConfig(model=model, device=device or server_device(), intra_op_threads=threads, cuda_tf32=cuda_tf32)
    runtime = ModelRuntime(config)
    return [{**measure(runtime, b, seconds), "provider": runtime.provider} for b in batch_sizes]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.baselines.ort_ceiling", description=__doc__)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 256])
    p.add_argument("--model", default="default")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", choices=DEVICES, help="default: the server's (MNIST_DEVICE, else auto)")
    args = p.parse_args(argv)
    for row in ceiling(args.batch_sizes, args.model, args.threads, args.device):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
