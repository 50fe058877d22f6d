"""The images' size, where the bytes are, build time and time to ready. Writes the `image` section of
docs/benchmarks.md.

    python -m benchmarks.image                     # both variants, with the machine's docker or podman
    python -m benchmarks.image --variants cpu --no-record

Each variant is built with `make image VARIANT=...` (a warm build cache makes the build time small), started
with a read-only root filesystem and a tmpfs at /tmp on the host's network, and timed from `run` to its first
`/readyz` 200. The sizes are the builder's own (`image inspect`), the parts `du` inside the image.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time

import httpx

from loadtests.server import REPO

from .report import update_section

PARTS = {  # what `du -sm` measures inside the image, and what it is
    "/usr": "the base image (Debian and its Python)",
    "/app/.venv": "the virtual environment",
    "/app/.venv/lib/python3.11/site-packages/nvidia": "of which the CUDA libraries",
    "/app/.venv/lib/python3.11/site-packages/onnxruntime": "of which ONNX Runtime",
    "/home/bentoml/bento": "the bento: service code and the three models",
}


def tool_available() -> str:
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return "docker"
    if shutil.which("podman"):
        return "podman"
    raise SystemExit("benchmarks.image needs docker (with its daemon) or podman")


def run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def measure(tool: str, variant: str) -> dict[str, float]:
    image = f"mnist-serve:{variant}"
    started = time.monotonic()
    subprocess.run(
        ["make", "image", f"VARIANT={variant}", f"OCI_BACKEND={tool}"], cwd=REPO, check=True, capture_output=True
    )
    figures = {"build_s": time.monotonic() - started}
    figures["size_mb"] = int(run(tool, "image", "inspect", image, "--format", "{{.Size}}").strip()) / 1e6
    each = f"for part in {' '.join(PARTS)}; do du -sm $part 2>/dev/null; done; true"  # one at a time: du counts once
    sizes = run(tool, "run", "--rm", "--entrypoint", "sh", image, "-c", each).split("\n")
    for line in filter(None, sizes):
        megabytes, path = line.split("\t")
        figures[path] = float(megabytes)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flags = ["--network", "host", "--read-only", "--tmpfs", "/tmp"]
    started = time.monotonic()
    container = run(tool, "run", "-d", *flags, image, "--host", "127.0.0.1", "--port", str(port)).strip()
    try:
        while time.monotonic() - started < 120:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        figures["ready_s"] = time.monotonic() - started
    finally:
        subprocess.run([tool, "rm", "-f", container], capture_output=True)
    return figures


def table(results: dict[str, dict[str, float]]) -> str:
    variants = list(results)
    rows = [
        "| | " + " | ".join(f"`mnist-serve:{v}`" for v in variants) + " |",
        "|---|" + "---:|" * len(variants),
        "| image size (MB) | " + " | ".join(f"{results[v]['size_mb']:.0f}" for v in variants) + " |",
    ]
    for path, what in PARTS.items():
        rows.append(
            f"| {what} (`{path}`, MB) | " + " | ".join(f"{results[v].get(path, 0):.0f}" for v in variants) + " |"
        )
    rows.append("| `make image` (s) | " + " | ".join(f"{results[v]['build_s']:.0f}" for v in variants) + " |")
    rows.append(
        "| `run` to the first `/readyz` 200 (s) | "
        + " | ".join(f"{results[v]['ready_s']:.1f}" for v in variants)
        + " |"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.image", description=__doc__)
    p.add_argument("--variants", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    p.add_argument("--no-record", action="store_true", help="print only; do not write docs/benchmarks.md")
    args = p.parse_args(argv)
    tool = tool_available()
    results = {variant: measure(tool, variant) for variant in args.variants}
    text = table(results)
    print(text)
    if not args.no_record:
        update_section("image", text, "python -m benchmarks.image " + " ".join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
