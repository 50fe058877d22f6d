"""The CUDA image leaves cuDNN out (deploy/image/requirements-cuda.in). That holds while ONNX Runtime's CUDA
provider library does not link cuDNN (it loads it lazily, for the kernels that need it, since ONNX Runtime PR
#29252) and the shipped models use no such kernel. This fails when a pinned ONNX Runtime links it again, or the
image's lock stops carrying a library the provider does link. No GPU needed: it reads the ELF file."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import onnx
import onnxruntime
import pytest

from tests.conftest import MODELS_DIR, REPO

PROVIDER = Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
# the wheel that carries each library the provider links, as the CUDA image's lock names it
CARRIED_BY = {
    "libcublas": "nvidia-cublas",
    "libcublasLt": "nvidia-cublas",
    "libcurand": "nvidia-curand",
    "libcudart": "nvidia-cuda-runtime",
}
NATIVE_OPS = {"Gemm", "MatMul", "Add", "Sub", "Div", "Mul", "Relu"}  # CUDA kernels of their own, no cuDNN


def linked_libraries(path: Path) -> set[str]:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    return {re.sub(r"\.so.*", "", name) for name in re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)}


@pytest.mark.skipif(not PROVIDER.exists(), reason="onnxruntime-gpu's CUDA provider library is not installed here")
@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf (binutils) is not installed")
def test_the_cuda_provider_links_no_cudnn_and_the_image_carries_what_it_links() -> None:
    linked = linked_libraries(PROVIDER)
    assert not {name for name in linked if name.startswith(("libcudnn", "libcufft"))}, linked
    lock = (REPO / "deploy/image/requirements-cuda.lock.txt").read_text()
    for library in linked & CARRIED_BY.keys():
        assert re.search(rf"^{CARRIED_BY[library]}==", lock, re.MULTILINE), f"{library} is not in the CUDA lock"
    assert {"libcublas", "libcublasLt", "libcudart"} <= linked  # the provider as the lock above expects it


def test_the_shipped_models_use_only_kernels_that_need_no_cudnn() -> None:
    for model in sorted(MODELS_DIR.glob("*/model.onnx")):
        ops = {node.op_type for node in onnx.load(model).graph.node}
        assert ops <= NATIVE_OPS, f"{model.parent.name} uses {sorted(ops - NATIVE_OPS)}: give the CUDA image cuDNN"
