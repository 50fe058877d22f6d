"""The in-process ceiling: ONNX Runtime called directly (no HTTP), at the batch sizes the load tests use.

python -m loadtests.baselines.ort_ceiling --batch-sizes 1 64 256
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from service.runtime import ModelRuntime, RuntimeConfig


def measure(runtime: ModelRuntime, batch: int, seconds: float = 2.0) -> dict[str, float]:
    x = np.random.default_rng(0).random((batch, 784), dtype=np.float32)
    runtime.logits(x)
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        runtime.logits(x)
        calls += 1
    return {"batch": batch, "us_per_call": 1e6 * elapsed / calls, "images_per_s": calls * batch / elapsed}


def ceiling(batch_sizes: list[int], model: str = "default", threads: int = 1) -> list[dict[str, float]]:
    runtime = ModelRuntime(RuntimeConfig(model=model, device="cpu", intra_op_threads=threads))
    return [measure(runtime, b) for b in batch_sizes]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.baselines.ort_ceiling", description=__doc__)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 256])
    p.add_argument("--model", default="default")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    for row in ceiling(args.batch_sizes, args.model, args.threads):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
