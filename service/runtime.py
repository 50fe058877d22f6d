"""The model runtime: one ONNX Runtime session over a verified `models/<name>/`, on the chosen execution provider.

Its jobs: find the model folder (its contract checked by service/artifact.py), create the session (CUDA or the
CPU, with the provider options), check the graph against the metadata, warm up, compare CUDA's answers with the
CPU's at start, and compute logits. What logits mean (softmax, sigmoid, labels) is service/heads.py's; the
input contract is the codecs' (service/codecs/pixels.py). Plain Python and numpy, no BentoML: tests use it
directly.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifact import DEVICES, INPUT_WIDTH, load_metadata
from .errors import ModelLoadError
from .heads import Activation, Predictions, probabilities

log = logging.getLogger("service.runtime")

# models/ beside service/: the same layout in the repo and inside a built bento (src/models, src/service)
DEFAULT_MODELS_DIR = str(Path(__file__).resolve().parents[1] / "models")
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a folder of models_dir, never a path out of it
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
CPU_AGREEMENT_TOLERANCE = 1e-5  # as export's parity gate: CUDA answers should be the CPU's answers


@dataclass(frozen=True)
class RuntimeConfig:
    models_dir: str = DEFAULT_MODELS_DIR
    model: str = "default"  # folder name under models_dir
    device: str = "auto"  # auto: CUDA when a driver is present, else CPU; cuda: try CUDA; cpu: never
    require_gpu: bool = False  # refuse to start instead of falling back to CPU
    intra_op_threads: int = 1  # ORT threads per inference call; the HTTP server needs the other cores
    spinning: bool = False  # ORT's busy-wait between ops burns a core the HTTP server needs
    warmup_rows: int = 64  # rows of the dummy batch run before the service reports ready
    # TF32 matrix products on the GPU (ONNX Runtime turns them on by default): faster on large matrices, but
    # probabilities then differ from the CPU's by up to ~1e-3 (9.4e-4 measured on an H100, issue 10). Off, the
    # CUDA provider computes in float32 like the CPU; this MLP is too small for TF32 to matter to its speed.
    cuda_tf32: bool = False

    def __post_init__(self) -> None:
        if not MODEL_NAME.fullmatch(self.model):
            raise ValueError(
                f"model: got {self.model!r}; a model is a folder name in {self.models_dir}/ "
                "(letters, digits, '.', '_', '-'; no path)"
            )
        if self.device not in DEVICES:
            raise ValueError(f"device: got {self.device!r}; allowed: {', '.join(DEVICES)}")
        if self.intra_op_threads < 0:
            raise ValueError(f"intra_op_threads: got {self.intra_op_threads}; allowed: 0 (ORT decides) or more")


def cuda_driver_present() -> bool:
    """Whether libcuda can be loaded: without it ORT's CUDA provider can only fail (noisily)."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def cuda_provider_options(config: RuntimeConfig) -> dict[str, str]:
    """ONNX Runtime's CUDA provider options, as strings (what ORT's option parser takes).

    Left at ORT's defaults, on purpose: the BFC arena growing by powers of two (the model needs a few MB per
    batch), copies on the default stream, no IO binding (inputs arrive in host memory and answers leave in it,
    so binding only moves the same copies) and no CUDA graphs (ORT replays a graph only for one fixed input
    shape; batches here vary in size).
    """
    return {
        "device_id": "0",
        "cudnn_conv_algo_search": "HEURISTIC",  # no exhaustive search at start-up: the graph has no convolutions
        "use_tf32": "1" if config.cuda_tf32 else "0",
    }


def probe_pixels(rows: int = 256, seed: int = 0) -> np.ndarray:
    """Deterministic (rows, 784) float32 pixels in [0, 1], half of them 0 as in a digit: inputs to compare
    two execution providers on."""
    rng = np.random.default_rng(seed)
    pixels = rng.random((rows, INPUT_WIDTH), dtype=np.float32)
    pixels[rng.random((rows, INPUT_WIDTH)) < 0.5] = 0.0
    return pixels


class ModelRuntime:
    """One ONNX Runtime session over a verified model folder, warmed up and ready."""

    def __init__(self, config: RuntimeConfig) -> None:
        import onnxruntime as ort

        started = time.perf_counter()
        self.config = config
        self.model_dir = Path(config.models_dir) / config.model
        if not self.model_dir.is_dir():
            available = sorted(p.name for p in Path(config.models_dir).glob("*") if (p / "metadata.json").exists())
            raise ModelLoadError(
                f"model {config.model!r} not found in {config.models_dir}/; available: {', '.join(available) or 'none'}"
            )
        self.metadata = load_metadata(self.model_dir)
        self.session = self._create_session(ort)
        self.provider = self.session.get_providers()[0]
        self._check_signature()
        self.input_name = self.metadata.input.name
        self.output_name = self.metadata.output.name
        self.warmup()
        # max |probability difference| from ONNX Runtime on the CPU, checked at start on CUDA; 0 on the CPU
        self.cpu_difference = self.difference_from_cpu() if self.provider != CPU else 0.0
        self.startup_seconds = time.perf_counter() - started
        log.info(
            "pid %d serving %s version %s on %s (startup %.2fs)",
            os.getpid(),
            self.metadata.name,
            self.metadata.version,
            self.provider,
            self.startup_seconds,
        )

    @property
    def default_activation(self) -> Activation:
        return self.metadata.head

    @property
    def num_outputs(self) -> int:
        return self.metadata.output.shape[1]

    def _create_session(self, ort):  # noqa: ANN001, ANN202 - ort is the onnxruntime module
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.config.intra_op_threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.config.spinning else "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "1" if self.config.spinning else "0")
        want_cuda = self.config.device == "cuda" or self.config.require_gpu
        if self.config.device == "auto" and not self.config.require_gpu:  # required: asked for, and checked below
            want_cuda = CUDA in ort.get_available_providers() and cuda_driver_present()
        providers: list = [CPU]
        if want_cuda:
            if hasattr(ort, "preload_dlls"):
                try:  # the CUDA 13 libraries from the nvidia-* pip wheels (or torch) when they are installed
                    ort.preload_dlls()
                except Exception as exc:  # noqa: BLE001 - a failed preload only means ORT searches the system paths
                    log.warning("onnxruntime.preload_dlls() failed: %s", exc)
            providers = [(CUDA, cuda_provider_options(self.config)), CPU]
        try:
            session = ort.InferenceSession(str(self.model_dir / "model.onnx"), options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for corrupt graphs
            raise ModelLoadError(f"{self.model_dir / 'model.onnx'} could not be loaded by ONNX Runtime: {exc}") from exc
        in_use = session.get_providers()
        if want_cuda and CUDA not in in_use:
            if self.config.require_gpu:
                raise ModelLoadError(
                    "CUDA was required (MNIST_REQUIRE_GPU=1) but ONNX Runtime fell back to CPU: check the NVIDIA "
                    "driver and the CUDA 13 libraries (the mnist-serve:cuda image has them; elsewhere pip install "
                    "'onnxruntime-gpu[cuda]' nvidia-cublas)"
                )
            log.warning("CUDA execution provider unavailable; ONNX Runtime fell back to %s", in_use)
        return session

    def difference_from_cpu(self, pixels: np.ndarray | None = None) -> float:
        """Largest |probability difference| between this session and ONNX Runtime on the CPU over `pixels`
        (default: `probe_pixels()`); warns past CPU_AGREEMENT_TOLERANCE, naming the setting that explains it."""
        import onnxruntime as ort

        pixels = probe_pixels() if pixels is None else pixels
        cpu = ort.InferenceSession(str(self.model_dir / "model.onnx"), providers=[CPU])
        cpu_logits = cpu.run([self.output_name], {self.input_name: pixels})[0]
        mine, theirs = self.predict(pixels), self.probabilities(cpu_logits, self.default_activation)
        difference = float(np.abs(mine.probabilities - theirs.probabilities).max())
        if difference > CPU_AGREEMENT_TOLERANCE:
            log.warning(
                "%s answers differ from the CPU's by up to %.2g (tolerance %g)%s",
                self.provider,
                difference,
                CPU_AGREEMENT_TOLERANCE,
                "; MNIST_CUDA_TF32=1 trades this precision for speed" if self.config.cuda_tf32 else "",
            )
        return difference

    def _check_signature(self) -> None:
        """The graph's input and output must be what the metadata promises."""
        (graph_input,) = self.session.get_inputs()
        (graph_output,) = self.session.get_outputs()
        meta_in, meta_out = self.metadata.input, self.metadata.output
        problems = []
        if graph_input.name != meta_in.name or graph_input.type != "tensor(float)":
            problems.append(f"input is {graph_input.name}:{graph_input.type}, metadata says {meta_in.name}:float32")
        if graph_input.shape[1:] != meta_in.shape[1:]:
            problems.append(f"input shape {graph_input.shape} vs metadata {meta_in.shape}")
        if graph_output.name != meta_out.name or graph_output.shape[1:] != meta_out.shape[1:]:
            problems.append(
                f"output {graph_output.name}{graph_output.shape} vs metadata {meta_out.name}{meta_out.shape}"
            )
        if problems:
            raise ModelLoadError(f"{self.model_dir}: metadata does not describe model.onnx: " + "; ".join(problems))

    def warmup(self) -> None:
        # the largest batch twice: on the CPU a new size's first two calls were slow (16, 16, then 12 ms at 1024)
        for rows in (1, self.config.warmup_rows, self.config.warmup_rows):
            self.logits(np.zeros((rows, self.metadata.input.shape[1]), dtype=np.float32))

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 784) float32 in [0, 1] -> (N, k) float32 logits."""
        return self.session.run([self.output_name], {self.input_name: pixels})[0]

    def probabilities(self, logits: np.ndarray, activation: Activation) -> Predictions:
        """This model's head over `logits` (service/heads.py)."""
        return probabilities(logits, activation, self.num_outputs)

    def predict(self, pixels: np.ndarray, activation: Activation | None = None) -> Predictions:
        return self.probabilities(self.logits(pixels), activation or self.default_activation)
