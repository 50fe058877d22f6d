"""Triton's perf_analyzer against the service's v2 door: fetched from NVIDIA's tritonclient wheel, then run.

    python -m loadtests.perf_analyzer fetch                                  # -> .cache/perf_analyzer/
    python -m loadtests.perf_analyzer -m default -u localhost:3000 --concurrency-range 1:8
                                                                             # any perf_analyzer flags

The binary ships in tritonclient's manylinux wheel. 2.50.0 is the newest whose build runs on Debian 12's
glibc (2.36); it links Debian's libb64 (`apt-get install libb64-0d`) and CUDA's runtime library, which
`nvidia-cuda-runtime-cu12`'s wheel carries (no GPU is needed to load it). Both wheels are pinned by hash and
unpacked, not installed: the project's own tritonclient (the Python client) stays at its pinned version.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "perf_analyzer"  # ignored by git
WHEELS = {  # requirement -> (sha256 of its manylinux x86_64 wheel, the file to take out of it, where it goes)
    "tritonclient==2.50.0": (
        "421fbb69ae6ab8cdb2c35b82134fcef2fe11e7af7718b1fcbc53335ab9bfe889",
        "tritonclient-2.50.0.data/data/bin/perf_analyzer",
        "bin/perf_analyzer",
    ),
    "nvidia-cuda-runtime-cu12==12.9.79": (
        "25bba2dfb01d48a9b59ca474a1ac43c6ebf7011f1b0b8cc44f54eb6ac48a96c3",
        "nvidia/cuda_runtime/lib/libcudart.so.12",
        "lib/libcudart.so.12",
    ),
}
APT_PACKAGES = ["libb64-0d"]  # what the binary links that no wheel carries


@dataclass(frozen=True)
class PerfAnalyzer:
    binary: Path
    env: dict[str, str]  # the process environment with the bundled libcudart on LD_LIBRARY_PATH

    def command(self, *args: str) -> list[str]:
        return [str(self.binary), *args]


def installed(cache: Path = CACHE) -> PerfAnalyzer:
    library_path = os.pathsep.join(p for p in (str(cache / "lib"), os.environ.get("LD_LIBRARY_PATH", "")) if p)
    return PerfAnalyzer(cache / "bin" / "perf_analyzer", {**os.environ, "LD_LIBRARY_PATH": library_path})


def fetch(cache: Path = CACHE) -> PerfAnalyzer:
    """Download the two pinned wheels with pip (hashes checked) and unpack the binary and libcudart."""
    missing = {req: spec for req, spec in WHEELS.items() if not (cache / spec[2]).exists()}
    with tempfile.TemporaryDirectory() as tmp:
        if missing:
            requirements = Path(tmp) / "requirements.txt"
            requirements.write_text("".join(f"{req} --hash=sha256:{spec[0]}\n" for req, spec in missing.items()))
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes", "--only-binary",
                 ":all:", "--platform", "manylinux2014_x86_64", "--python-version", "3.11", "-r", str(requirements),
                 "-d", tmp],
                check=True,
            )  # fmt: skip
        for req, (_, member, target) in missing.items():
            name = req.split("==")[0].replace("-", "_")
            (wheel,) = Path(tmp).glob(f"{name}-*.whl")
            destination = cache / target
            destination.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(wheel) as archive:
                destination.write_bytes(archive.read(member))
            destination.chmod(0o755)
    return installed(cache)


def why_not_runnable(tool: PerfAnalyzer) -> str | None:
    """None when the binary starts here; otherwise what is missing (not fetched, a library, the platform)."""
    if not tool.binary.exists():
        return f"{tool.binary} is missing: run `python -m loadtests.perf_analyzer fetch`"
    try:
        done = subprocess.run(
            tool.command("--version"), env=tool.env, capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:  # another architecture or OS
        return f"{tool.binary} cannot be run here: {exc}"
    if done.returncode != 0:
        hint = f" (install Debian's {' '.join(APT_PACKAGES)})" if "libb64" in done.stderr else ""
        return f"{tool.binary} does not start{hint}: {done.stderr.strip()[-300:]}"
    return None


def main(argv: list[str]) -> int:
    if argv[:1] == ["fetch"]:
        tool = fetch()
        problem = why_not_runnable(tool)
        print(problem or f"perf_analyzer ready: {tool.binary}")
        return 1 if problem else 0
    tool = installed()
    if problem := why_not_runnable(tool):
        print(problem, file=sys.stderr)
        return 2
    return subprocess.run(tool.command(*argv), env=tool.env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
