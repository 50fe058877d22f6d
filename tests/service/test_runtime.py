from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from service.codecs.pixels import validate_pixels
from service.errors import InputError, ModelLoadError
from service.runtime import (
    CPU_AGREEMENT_TOLERANCE,
    ModelRuntime,
    RuntimeConfig,
    cuda_driver_present,
    cuda_provider_options,
    probe_pixels,
)
from tests.conftest import MODELS_DIR
from tests.service.conftest import load_runtime

no_gpu = pytest.mark.skipif(cuda_driver_present(), reason="checks the CPU fallback; this machine has a CUDA driver")


def cuda_usable() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers() and cuda_driver_present()


requires_cuda = pytest.mark.skipif(
    not cuda_usable(), reason="no CUDA: needs an NVIDIA driver and ONNX Runtime's CUDA provider"
)


runtime = load_runtime


@pytest.fixture(scope="module")
def test_set(mnist_root: Path) -> tuple[np.ndarray, np.ndarray]:
    from torchvision.datasets import MNIST

    ds = MNIST(str(mnist_root), train=False, download=False)
    return ds.data.numpy().reshape(-1, 784).astype(np.float32) / 255.0, ds.targets.numpy()


def test_softmax_probabilities_sum_to_one(default_runtime: ModelRuntime) -> None:
    x = np.random.default_rng(0).random((16, 784), dtype=np.float32)
    result = default_runtime.predict(x)
    assert result.probabilities.shape == (16, 10)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(result.label_indices, result.probabilities.argmax(axis=1))


def test_sigmoid_on_the_ten_class_model_is_per_class(default_runtime: ModelRuntime) -> None:
    x = np.random.default_rng(1).random((4, 784), dtype=np.float32)
    logits = default_runtime.logits(x)
    result = default_runtime.predict(x, "sigmoid")
    np.testing.assert_allclose(result.probabilities, 1 / (1 + np.exp(-logits)), rtol=1e-5, atol=1e-7)


@pytest.mark.data
@pytest.mark.parametrize("model", ["default", "pigeon", "mnist-nn"])
def test_accuracy_matches_the_exported_metadata(model: str, test_set: tuple[np.ndarray, np.ndarray]) -> None:
    rt = runtime(model)
    x, digits = test_set
    predicted = rt.predict(x).label_indices
    if rt.metadata.head == "sigmoid":
        expected = np.isin(digits, rt.metadata.model_extra["positive_digits"]).astype(np.int64)
    else:
        expected = digits
    accuracy = float((predicted == expected).mean())
    assert accuracy == pytest.approx(rt.metadata.metrics["test_accuracy"], abs=1e-4)


def test_pigeon_uses_sigmoid_and_offers_two_class_softmax() -> None:
    rt = runtime("pigeon")
    assert rt.default_activation == "sigmoid"
    x = np.random.default_rng(2).random((5, 784), dtype=np.float32)
    sig = rt.predict(x)
    assert sig.probabilities.shape == (5, 1)
    soft = rt.predict(x, "softmax")
    assert soft.probabilities.shape == (5, 2)
    np.testing.assert_allclose(soft.probabilities[:, 1], sig.probabilities[:, 0], rtol=1e-6)
    np.testing.assert_allclose(soft.probabilities.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(soft.label_indices, sig.label_indices)


@no_gpu
def test_auto_device_without_a_driver_uses_cpu() -> None:
    assert runtime(device="auto").provider == "CPUExecutionProvider"


@no_gpu
def test_cuda_falls_back_to_cpu_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="service.runtime"):
        rt = runtime(device="cuda")
    assert rt.provider == "CPUExecutionProvider"
    assert "fell back" in caplog.text


@no_gpu
@pytest.mark.parametrize("device", ["cuda", "auto"])  # auto: the default, with the gpu overlay's MNIST_REQUIRE_GPU=1
def test_required_gpu_is_a_startup_error_not_a_fallback(device: str) -> None:
    with pytest.raises(ModelLoadError, match="CUDA was required"):
        runtime(device=device, require_gpu=True)


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("model", ["default", "pigeon"])
def test_cuda_runtime_runs_on_cuda_and_agrees_with_cpu(model: str) -> None:
    gpu = runtime(model, device="cuda", require_gpu=True)
    assert gpu.provider == "CUDAExecutionProvider"
    cpu = runtime(model, device="cpu")
    x = np.random.default_rng(3).random((256, 784), dtype=np.float32)
    on_gpu, on_cpu = gpu.predict(x), cpu.predict(x)
    # TF32 off: float32 on both, only the order of the sums differs (issue 10 measured 9.4e-4 with TF32 on)
    np.testing.assert_allclose(on_gpu.probabilities, on_cpu.probabilities, atol=CPU_AGREEMENT_TOLERANCE)
    np.testing.assert_array_equal(on_gpu.label_indices, on_cpu.label_indices)
    assert gpu.cpu_difference <= CPU_AGREEMENT_TOLERANCE


@pytest.mark.cuda
@requires_cuda
def test_tf32_on_cuda_is_faster_arithmetic_and_is_reported_as_a_difference_from_cpu() -> None:
    gpu = runtime(device="cuda", require_gpu=True, cuda_tf32=True)
    assert 0.0 < gpu.cpu_difference <= 1e-2


def test_the_cuda_provider_computes_in_float32_unless_tf32_is_asked_for() -> None:
    assert cuda_provider_options(RuntimeConfig())["use_tf32"] == "0"
    assert cuda_provider_options(RuntimeConfig(cuda_tf32=True))["use_tf32"] == "1"
    assert all(isinstance(v, str) for v in cuda_provider_options(RuntimeConfig()).values())  # ORT's parser


def test_a_runtime_on_the_cpu_is_its_own_reference() -> None:
    """On the CPU the start-up check is skipped and cpu_difference reported as 0: what measuring would give."""
    rt = runtime(device="cpu")
    assert rt.provider == "CPUExecutionProvider"
    assert rt.cpu_difference == 0.0
    assert rt.difference_from_cpu() == 0.0  # measured: a second CPU session answers bit for bit the same


def test_answers_that_drift_from_the_cpu_are_measured_and_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rt = runtime(device="cpu")
    exact = rt.logits
    monkeypatch.setattr(rt, "logits", lambda pixels: exact(pixels) * np.float32(1.001))  # logits off by 0.1%
    with caplog.at_level(logging.WARNING, logger="service.runtime"):
        difference = rt.difference_from_cpu()
    assert CPU_AGREEMENT_TOLERANCE < difference < 0.1
    assert "differ from the CPU's" in caplog.text


def test_probe_pixels_are_fixed_and_in_the_input_range() -> None:
    first, again = probe_pixels(), probe_pixels()
    np.testing.assert_array_equal(first, again)
    assert first.shape == (256, 784)
    assert first.dtype == np.float32
    assert first.min() >= 0.0
    assert first.max() <= 1.0
    assert 0.3 < (first == 0).mean() < 0.7


def test_runtime_reports_the_provider_onnx_runtime_uses(default_runtime: ModelRuntime) -> None:
    assert default_runtime.provider == default_runtime.session.get_providers()[0]
    expected = "CUDAExecutionProvider" if cuda_usable() else "CPUExecutionProvider"
    assert default_runtime.provider == expected


def copy_model(tmp_path: Path, name: str = "default") -> Path:
    target = tmp_path / name
    shutil.copytree(MODELS_DIR / name, target)
    return target


def load_from(tmp_path: Path, name: str = "default") -> ModelRuntime:
    return ModelRuntime(RuntimeConfig(models_dir=str(tmp_path), model=name))


def test_corrupt_model_file_is_refused(tmp_path: Path) -> None:
    model_dir = copy_model(tmp_path)
    data = bytearray((model_dir / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model_dir / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="does not match its metadata: sha256"):
        load_from(tmp_path)


def test_missing_model_file_is_refused(tmp_path: Path) -> None:
    (copy_model(tmp_path) / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match="model.onnx is missing"):
        load_from(tmp_path)


def test_unreadable_metadata_is_refused(tmp_path: Path) -> None:
    (copy_model(tmp_path) / "metadata.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="does not describe a servable model"):
        load_from(tmp_path)


def edit_metadata(model_dir: Path, **changes) -> None:
    path = model_dir / "metadata.json"
    meta = json.loads(path.read_text())
    for dotted, value in changes.items():
        node = meta
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(json.dumps(meta))


def test_metadata_head_inconsistent_with_outputs_is_refused(tmp_path: Path) -> None:
    edit_metadata(copy_model(tmp_path), head="sigmoid")
    with pytest.raises(ModelLoadError, match="head sigmoid needs 1 outputs"):
        load_from(tmp_path)


def test_metadata_that_does_not_describe_the_graph_is_refused(tmp_path: Path) -> None:
    edit_metadata(copy_model(tmp_path), input__name="image")
    with pytest.raises(ModelLoadError, match="metadata does not describe model.onnx"):
        load_from(tmp_path)


def test_pigeon_metadata_on_the_ten_class_graph_is_refused(tmp_path: Path) -> None:
    model_dir = copy_model(tmp_path)
    shutil.copy(MODELS_DIR / "pigeon" / "metadata.json", model_dir / "metadata.json")
    with pytest.raises(ModelLoadError, match="does not match its metadata"):
        load_from(tmp_path)


def test_unknown_model_lists_the_available_ones() -> None:
    listed = r"model 'nope' not found in .*; available: default, fast, mnist-nn, pigeon"
    with pytest.raises(ModelLoadError, match=listed):
        runtime("nope")


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.zeros((2, 783)), "expected shape"),
        (np.zeros((0, 784)), "no images"),
        (np.full((1, 784), np.nan), r"images\[0\]: NaN or infinite"),
        (np.full((1, 784), np.inf), r"images\[0\]: NaN or infinite"),
        (np.full((1, 784), 255.0), r"values must be in \[0, 1\]"),
        (np.full((1, 784), -0.1), r"values must be in \[0, 1\]"),
        (np.zeros((5, 784)), "5 images in one request; the limit is 4"),
        (np.array([["a"] * 784]), "values must be numbers"),
    ],
)
def test_validate_pixels_rejects_what_breaks_the_contract(pixels: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        validate_pixels(pixels, max_rows=4)


def test_validate_pixels_accepts_28x28_and_returns_float32_rows() -> None:
    out = validate_pixels(np.zeros((3, 28, 28), dtype=np.float64))
    assert out.shape == (3, 784)
    assert out.dtype == np.float32


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MNIST_ORT_THREADS": "two"}, "MNIST_ORT_THREADS: got 'two'; allowed: an integer >= 0"),
        ({"MNIST_MAX_BATCH_SIZE": "1"}, "MNIST_MAX_BATCH_SIZE: got 1; allowed: an integer >= 2"),
        ({"MNIST_DEVICE": "gpu"}, "device: got 'gpu'; allowed: auto, cuda, cpu"),
        ({"MNIST_MAX_QUEUE": "0"}, "MNIST_MAX_QUEUE: got 0; allowed: an integer >= 1"),
        ({"MNIST_LOG_FORMAT": "xml"}, "MNIST_LOG_FORMAT: got 'xml'; allowed: text, json"),
        ({"MNIST_MODEL": "../../../../etc"}, "model: got '../../../../etc'; a model is a folder name in"),
    ],
)
def test_bad_environment_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    from service.settings import ServiceSettings

    with pytest.raises(ValueError, match=re.escape(message)):
        ServiceSettings.from_env(env)


def test_environment_settings_are_parsed_into_the_typed_settings() -> None:
    from service.settings import ServiceSettings

    env = {
        "MNIST_CORS_ORIGINS": " https://a.example, https://b.example ,,",
        "MNIST_MAX_IMAGES": "7",
        "MNIST_TRACE_PREDICT": "on",
        "MNIST_LOG_FORMAT": "JSON",
    }
    settings = ServiceSettings.from_env(env)
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert (settings.limits.max_images, settings.trace_predict, settings.log_format) == (7, True, "json")
    assert ServiceSettings.from_env({}).cors_origins == ()


@pytest.mark.parametrize("name", ["../default", "/etc", "default/../pigeon", "..", ".hidden", "a b", "", "x" * 129])
def test_the_model_name_is_a_folder_of_the_models_dir_never_a_path(name: str) -> None:
    with pytest.raises(ValueError, match="a model is a folder name in"):
        RuntimeConfig(models_dir=str(MODELS_DIR), model=name)


@pytest.mark.parametrize("name", ["default", "mnist-nn", "v1.2_rc", "x" * 128])
def test_plain_folder_names_are_model_names(name: str) -> None:
    assert RuntimeConfig(model=name).model == name


def test_the_onnx_runtime_build_bundles_no_cuda_plugin_provider() -> None:
    """README ("Package and deploy") explains ORT's start-up line `No registered plugin EP device found for
    'CUDAExecutionProvider'` by this: the lookup finds no plugin and ORT goes on with its built-in CUDA
    provider. When a pinned ORT bundles one, this fails: check which provider then answers, and the README."""
    import onnxruntime as ort

    assert ", cuda-plugin-ep=" not in ort.get_build_info()
