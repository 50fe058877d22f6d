"""benchmarks.gpu: says clearly when there is no GPU, and plans its load runs to saturate the workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import gpu


def test_without_a_gpu_it_says_why_and_measures_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # docs/benchmarks.md would be written here
    monkeypatch.setattr(gpu, "missing_gpu", lambda: "no NVIDIA driver (libcuda.so.1 cannot be loaded)")
    monkeypatch.setattr(gpu, "ceiling", lambda *a, **k: pytest.fail("measured without a GPU"))
    assert gpu.main([]) == gpu.NO_GPU
    assert "no GPU to measure: no NVIDIA driver" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("driver", "torch_cuda", "providers", "reason"),
    [
        (False, True, ["CUDAExecutionProvider"], "no NVIDIA driver"),
        (True, False, ["CUDAExecutionProvider"], "sees no CUDA device"),
        (True, True, ["CPUExecutionProvider"], "ONNX Runtime has no CUDA provider"),
        (True, True, ["CUDAExecutionProvider", "CPUExecutionProvider"], None),
    ],
)
def test_the_verdict_names_the_first_missing_piece(
    monkeypatch: pytest.MonkeyPatch, driver: bool, torch_cuda: bool, providers: list[str], reason: str | None
) -> None:
    """Each of the driver, torch's CUDA and ONNX Runtime's CUDA provider is needed, and the one missing is named;
    faked, so the check runs the same on a machine with a GPU and on one without."""
    import onnxruntime as ort
    import torch

    monkeypatch.setattr(gpu, "cuda_driver_present", lambda: driver)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: torch_cuda)
    monkeypatch.setattr(ort, "get_available_providers", lambda: providers)
    verdict = gpu.missing_gpu()
    assert verdict is None if reason is None else reason in verdict


def test_each_load_run_pins_as_many_locust_workers_as_server_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu.os, "cpu_count", lambda: 16)
    cfg = gpu.load_config(4, duration=20)
    assert (cfg.server_cpus, cfg.load_cpus, cfg.locust_workers, cfg.users) == ("0-3", "4-7", 4, [256])
    assert cfg.env == {"MNIST_WORKERS": "4", "MNIST_REQUIRE_GPU": "1"}
    assert gpu.load_config(8, duration=20).load_cpus == "8-15"


def test_the_workers_table_states_scaling_against_its_target() -> None:
    run = {"p99_ms": 20, "failed": 0, "server_cpu_percent": 90, "locust_cpu_percent": 80, "locust_cpu_warning": False}
    table = gpu.workers_section({1: {**run, "requests_per_s": 1000}, 2: {**run, "requests_per_s": 1700}})
    assert "| 2 | 1700 | 1.70x (target >= 1.6x) |" in table
    assert "| workers | requests/s | vs 1 worker |" in table
    table = gpu.workers_section({2: {**run, "requests_per_s": 1000}, 4: {**run, "requests_per_s": 1700}})
    assert "| 4 | 1700 | 1.70x (target >= 1.6x) |" in table
    assert "| workers | requests/s | vs 2 workers |" in table


def test_the_onnx_runtime_table_sets_tf32_off_and_on_beside_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_ceiling(batches: list[int], device: str, cuda_tf32: bool = False) -> list[dict]:
        us = {"cpu": 100.0, "cuda": 20.0 if cuda_tf32 else 30.0}[device]
        provider = "CPUExecutionProvider" if device == "cpu" else "CUDAExecutionProvider"
        return [{"batch": b, "us_per_call": us, "images_per_s": b / us * 1e6, "provider": provider} for b in batches]

    def fake_parity(cuda_tf32: bool = False) -> dict:
        return {"images": 512, "max_abs_diff": 9.4e-4 if cuda_tf32 else 2e-7, "labels_differ": 0}

    monkeypatch.setattr(gpu, "ceiling", fake_ceiling)
    monkeypatch.setattr(gpu, "provider_parity", fake_parity)
    table = gpu.onnx_runtime_section()
    assert "| 256 | 30 | 8533333 | 20 | 100 | 2560000 |" in table
    assert "Parity with TF32 off, over the 512 sample images: max |probability difference| 2.00e-07" in table
    assert "Parity with TF32 on, over the 512 sample images: max |probability difference| 9.40e-04" in table


def test_the_open_loop_runs_at_fractions_of_one_workers_capacity() -> None:
    cfg = gpu.open_loop_config(3000, duration=20)
    assert cfg.open_loop == [750, 1500, 2250]
    assert cfg.env == {"MNIST_REQUIRE_GPU": "1"}
    assert (cfg.server_cpus, cfg.load_cpus) == ("0", "1")


def test_the_open_loop_table_sets_the_servers_evidence_beside_the_latency() -> None:
    run = {
        "rate": 1500.0,
        "sent_per_s": 1480.0,
        "requests_per_s": 1470.0,
        "send_lag_p99_ms": 3.25,
        "p50_ms": 2.0,
        "p99_ms": 96.0,
        "batch_sizes": {"<=1.0": 900, "<=2.0": 100},
        "batch_seconds": {"<=0.0001": 990, "<=0.05": 10},
        "gc_pauses": {"2": {"collections": 3.0, "seconds": 0.04, "over_10ms": 1.0}},
    }
    table = gpu.open_loop_section([run])
    assert "| 1500 | 1480 | 1470 | 3.2 | 2.0 | 96.0 | 1000 | <=0.05 s: 10 | 3 (40 ms, 1 over 10 ms) |" in table
    assert "| offered /s | sent /s | answered /s | send lag p99 ms |" in table  # the rate asked for, apart
    assert gpu.slowest_bucket({}) == "none"


def test_a_worker_is_counted_once_it_reports_its_model() -> None:
    metrics = "\n".join(
        [
            "# HELP mnist_model_info The served model",
            'mnist_model_info{model="default",pid="101",provider="CUDAExecutionProvider",version="v"} 1.0',
            'mnist_model_info{model="default",pid="102",provider="CUDAExecutionProvider",version="v"} 1.0',
            'mnist_requests_shed_total{route="/predict"} 0.0',
        ]
    )
    assert gpu.loaded_workers(metrics) == 2
    assert gpu.loaded_workers("") == 0


def test_the_memory_table_states_each_workers_share() -> None:
    table = gpu.memory_section([{"workers": 4, "total_mib": 2048.0, "per_worker_mib": 512.0}])
    assert "| 4 | 2048 | 512 |" in table
