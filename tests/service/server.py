"""Start `bentoml serve` in a subprocess on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, log, timeout: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read().decode()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"server not ready after {timeout}s")
        time.sleep(0.2)


@contextmanager
def running_service(env: dict[str, str] | None = None, timeout: float = 90.0) -> Iterator[str]:
    """Yield the base URL once /readyz answers 200; stop the server afterwards."""
    port = free_port()
    bentoml = str(Path(sys.executable).parent / "bentoml")
    command = [bentoml, "serve", "service.service:MNISTService", "--host", "127.0.0.1", "--port", str(port)]
    # the log goes to a file: a pipe nobody reads fills up and blocks the server
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc, log, timeout)
            yield url
        finally:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
