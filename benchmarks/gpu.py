"""The GPU picture in one command: training on the GPU, ONNX Runtime CUDA vs CPU per call (TF32 off and on)
and their parity, the service's load with 1, 2, 4 and 8 workers sharing the GPU and the device memory they
take, and an open loop at 25/50/75% of one worker's capacity with the server's batch times and collector
pauses beside it. Each part writes its section of docs/benchmarks.md with the machine, the provider and the
commit.

    python -m benchmarks.gpu                       # on a machine with one NVIDIA GPU
    python -m benchmarks.gpu --skip-training       # ONNX Runtime and load only
    python -m benchmarks.gpu --workers 1 2         # fewer load runs

Where there is no usable GPU (no CUDA build of torch, no NVIDIA driver, or no CUDA provider in ONNX
Runtime), it says which is missing, measures nothing, writes nothing and exits with status 2.
The CUDA parts were written on a machine without a GPU: only the no-GPU path has run (issue 10).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import httpx
import numpy as np

from loadtests.baselines.ort_ceiling import ceiling
from loadtests.payloads import load_sample
from loadtests.run import RunConfig
from loadtests.run import run as run_load
from loadtests.targets import TARGETS
from service.runtime import CUDA, ModelRuntime, RuntimeConfig, cuda_driver_present

from .report import update_section

BATCHES = [1, 64, 256, 1024]
NO_GPU = 2


def missing_gpu() -> str | None:
    """Why this machine cannot give GPU figures, or None when it can."""
    import onnxruntime as ort
    import torch

    if not cuda_driver_present():
        return "no NVIDIA driver (libcuda.so.1 cannot be loaded)"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    if CUDA not in ort.get_available_providers():
        return "ONNX Runtime has no CUDA provider: pip install onnxruntime-gpu (see README, GPU)"
    return None


def provider_parity(model: str = "default", cuda_tf32: bool = False) -> dict[str, float]:
    """Max |probability difference| between ONNX Runtime on CUDA and on the CPU over the shipped sample."""
    images, _ = load_sample()
    pixels = images.astype(np.float32) / 255
    config = RuntimeConfig(model=model, device="cuda", require_gpu=True, cuda_tf32=cuda_tf32)
    cuda = ModelRuntime(config).predict(pixels, "softmax")
    cpu = ModelRuntime(RuntimeConfig(model=model, device="cpu")).predict(pixels, "softmax")
    return {
        "images": len(pixels),
        "max_abs_diff": float(np.abs(cuda.probabilities - cpu.probabilities).max()),
        "labels_differ": int((cuda.label_indices != cpu.label_indices).sum()),
    }


def onnx_runtime_section() -> str:
    """Per call at each batch size on CUDA with TF32 off (the service's default) and on, and on the CPU; and
    each CUDA setting's parity with the CPU: the measurement that decides MNIST_CUDA_TF32's default."""
    exact = {r["batch"]: r for r in ceiling(BATCHES, device="cuda")}
    tf32 = {r["batch"]: r for r in ceiling(BATCHES, device="cuda", cuda_tf32=True)}
    cpu = {r["batch"]: r for r in ceiling(BATCHES, device="cpu")}
    parity = {"off": provider_parity(), "on": provider_parity(cuda_tf32=True)}
    rows = [
        f"| {b} | {exact[b]['us_per_call']:.0f} | {exact[b]['images_per_s']:.0f} | {tf32[b]['us_per_call']:.0f} "
        f"| {cpu[b]['us_per_call']:.0f} | {cpu[b]['images_per_s']:.0f} |"
        for b in BATCHES
    ]
    return "\n".join(
        [
            "## GPU: ONNX Runtime per call, CUDA vs CPU (1 thread)",
            "",
            f"Providers measured: {exact[1]['provider']} and {cpu[1]['provider']}.",
            "",
            "| batch | CUDA us/call (TF32 off, default) | CUDA images/s | CUDA us/call, TF32 on | CPU us/call "
            "| CPU images/s |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            *(
                f"Parity with TF32 {setting}, over the {p['images']} sample images: max |probability difference| "
                f"{p['max_abs_diff']:.2e}, {p['labels_differ']} labels differ (tolerance: 1e-5)."
                for setting, p in parity.items()
            ),
        ]
    )


def load_config(workers: int, duration: int) -> RunConfig:
    """json-1 with `workers` server processes on cores 0..w-1 and as many pinned Locust workers beside them."""
    cores = os.cpu_count() or 2
    load = f"{workers}-{min(cores - 1, 2 * workers - 1)}" if cores > workers else None
    return RunConfig(
        scenario="json-1",
        users=[64 * workers],
        duration=duration,
        server_cpus=f"0-{workers - 1}",
        load_cpus=load,
        locust_workers=workers,
        env={"MNIST_WORKERS": str(workers), "MNIST_REQUIRE_GPU": "1"},
        out=f"results/gpu-workers-{workers}",
    )


def workers_section(results: dict[int, dict]) -> str:
    fewest = min(results)  # 1 unless --workers left it out; scaling is stated against it
    base = results[fewest]["requests_per_s"]
    rows = [
        f"| {w} | {r['requests_per_s']:.0f} | {r['requests_per_s'] / base:.2f}x (target >= {0.8 * w / fewest:.1f}x) "
        f"| {r['p99_ms']:.0f} ms | {r['failed']} | {r['server_cpu_percent'] or 0:.0f}% | {r['locust_cpu_percent']:.0f}%"
        f"{' (saturated)' if r['locust_cpu_warning'] else ''} |"
        for w, r in sorted(results.items())
    ]
    return "\n".join(
        [
            "## GPU: one-image requests with several workers sharing the GPU",
            "",
            f"| workers | requests/s | vs {fewest} worker{'s' if fewest > 1 else ''} | p99 | failed | server CPU "
            "| Locust CPU |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )


def gpu_memory_used_mib() -> int:
    """Device memory in use on GPU 0, all processes (nvidia-smi): a worker's share is the rise it causes."""
    query = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "--id=0"]
    return int(subprocess.run(query, capture_output=True, text=True, check=True).stdout.split()[0])


def loaded_workers(metrics_text: str) -> int:
    """Workers that have loaded their model: one `mnist_model_info` series per worker process (its pid label)."""
    return sum(line.startswith("mnist_model_info{") for line in metrics_text.splitlines())


def worker_memory(workers: int, timeout_s: float = 120.0) -> dict[str, float]:
    """GPU memory the service takes with `workers` workers, each with its own CUDA session, once all are loaded.

    Measured as the device's memory in use before the start and after every worker reported its model,
    because container PIDs seldom match the ones nvidia-smi lists per process."""
    before = gpu_memory_used_mib()
    env = {"MNIST_WORKERS": str(workers), "MNIST_REQUIRE_GPU": "1"}
    with TARGETS["service"].start(f"0-{workers - 1}", env) as server:
        deadline = time.monotonic() + timeout_s
        while loaded_workers(httpx.get(f"{server.url}/metrics", timeout=10).text) < workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{workers} workers did not all load their model in {timeout_s:.0f} s")
            time.sleep(1.0)
        total = gpu_memory_used_mib() - before
    return {"workers": workers, "total_mib": total, "per_worker_mib": total / workers}


def memory_section(rows: list[dict[str, float]]) -> str:
    lines = [f"| {r['workers']} | {r['total_mib']:.0f} | {r['per_worker_mib']:.0f} |" for r in rows]
    return "\n".join(
        [
            "## GPU: device memory with several workers (each its own CUDA session)",
            "",
            "| workers | MiB in all | MiB per worker |",
            "|---|---|---|",
            *lines,
        ]
    )


def open_loop_config(capacity: float, duration: int) -> RunConfig:
    """One worker on the GPU (server on core 0, load on core 1 as in issue 10), then fixed arrival rates at a
    quarter, half and three quarters of `capacity` (requests/s of one worker, closed loop)."""
    return RunConfig(
        scenario="json-1",
        users=[64],
        duration=duration,
        open_loop=[round(capacity * f) for f in (0.25, 0.5, 0.75)],
        env={"MNIST_REQUIRE_GPU": "1"},
        out="results/gpu-open-loop",
    )


def slowest_bucket(buckets: dict[str, int]) -> str:
    """The highest non-empty bucket of a `histogram_diff`, as "<=0.0025 s: 3"."""
    if not buckets:
        return "none"
    le, count = list(buckets.items())[-1]
    return f"{le} s: {count}"


def open_loop_section(runs: list[dict]) -> str:
    """Open-loop latency beside what the server saw meanwhile: its slowest batches and its collector pauses,
    the evidence for why p99 is what it is (issue 10: 96 ms at half capacity, cause unknown)."""
    rows = []
    for r in runs:
        full = r["gc_pauses"].get("2", {})
        rows.append(
            f"| {r['rate']:.0f} | {r['sent_per_s']:.0f} | {r['requests_per_s']:.0f} | {r['send_lag_p99_ms']:.1f} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {sum(r['batch_sizes'].values())} "
            f"| {slowest_bucket(r['batch_seconds'])} | {full.get('collections', 0):.0f} "
            f"({1000 * full.get('seconds', 0):.0f} ms, {full.get('over_10ms', 0):.0f} over 10 ms) |"
        )
    return "\n".join(
        [
            "## GPU: open loop with one worker, and what the server saw meanwhile",
            "",
            "| offered /s | sent /s | answered /s | send lag p99 ms | p50 ms | p99 ms | batches | slowest batches "
            "| full collections |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--skip-load", action="store_true")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--duration", type=int, default=20, help="seconds per load run")
    args = p.parse_args(argv)
    reason = missing_gpu()
    if reason is not None:
        print(f"benchmarks.gpu: no GPU to measure: {reason}. Nothing measured, nothing written.", file=sys.stderr)
        return NO_GPU
    command = "python -m benchmarks.gpu " + " ".join(sys.argv[1:] if argv is None else argv)
    if not args.skip_training:
        subprocess.run([sys.executable, "-m", "benchmarks.training", "--device", "cuda"], check=True)
    update_section("gpu-onnxruntime", onnx_runtime_section(), command.strip())
    if not args.skip_load:
        results = {w: run_load(load_config(w, args.duration))["runs"][0] for w in args.workers}
        update_section("gpu-workers", workers_section(results), command.strip())
        memory = [worker_memory(w) for w in args.workers]
        update_section("gpu-memory", memory_section(memory), command.strip())
        one = results[1] if 1 in results else run_load(load_config(1, args.duration))["runs"][0]
        capacity = one["requests_per_s"]
        open_loop = run_load(open_loop_config(capacity, args.duration))["open_loop"]
        update_section("gpu-open-loop", open_loop_section(open_loop), command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
