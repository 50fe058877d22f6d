"""Start a server in a subprocess on a free loopback port, wait until it is ready, stop it afterwards.

Used by the tests (a real `bentoml serve`), the benchmarks and the load-test runner (the service and the
baselines), optionally pinned to given CPU cores with `taskset`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def pinned(command: list[str], cpus: str | None) -> list[str]:
    """`command` run on the given CPU list with taskset, where there is one; as it is otherwise."""
    return ["taskset", "-c", cpus, *command] if cpus and shutil.which("taskset") else command


def pin_to(cpus: str | None) -> None:
    """Run this process on the given CPU list ("1", "0,1"); None or a machine without affinity: anywhere."""
    if hasattr(os, "sched_setaffinity"):
        available = set(range(os.cpu_count() or 1))
        wanted = {int(c) for c in cpus.split(",")} & available if cpus else available
        os.sched_setaffinity(0, wanted or available)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bentoml_command(port: int) -> list[str]:
    return [str(BIN / "bentoml"), "serve", "service.app:MNISTService", "--host", "127.0.0.1", "--port", str(port)]


@dataclass
class Server:
    url: str
    pid: int
    started_in: float  # seconds from spawn to the first 200 on the ready path


def _wait_ready(url: str, proc: subprocess.Popen, log, timeout: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read().decode()[-3000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready after {timeout}s")
        time.sleep(0.05)


@contextmanager
def running_server(
    command: Sequence[str] | None = None,
    *,
    port: int | None = None,
    env: dict[str, str] | None = None,
    cpus: str | None = None,
    ready_path: str = "/readyz",
    timeout: float = 90.0,
) -> Iterator[Server]:
    """Run `command` (default: the BentoML service) and yield once `ready_path` answers 200."""
    port = port or free_port()
    command = list(command or bentoml_command(port))
    command = pinned(command, cpus)
    url = f"http://127.0.0.1:{port}"
    # the log goes to a file: a pipe nobody reads fills up and blocks the server. Each server gets its own
    # BENTOML_HOME: a starting `bentoml serve` empties $BENTOML_HOME/prometheus_multiproc_dir, which would wipe
    # the /metrics of any other server running beside it.
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory(prefix="bentoml-home-") as home:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            # No drain on SIGTERM (MNIST_DRAIN_S) unless asked for: no balancer stands in front of these servers,
            # and each would take the drain's seconds to stop.
            env={
                "MNIST_DRAIN_S": "0",
                **os.environ,
                "BENTOML_DO_NOT_TRACK": "true",
                "BENTOML_HOME": home,
                **(env or {}),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_ready(url + ready_path, proc, log, timeout)
            yield Server(url, proc.pid, time.perf_counter() - started)
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have been stopped already
                os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


@contextmanager
def running_service(env: dict[str, str] | None = None, cpus: str | None = None) -> Iterator[str]:
    """The BentoML service's base URL, for tests."""
    with running_server(env=env, cpus=cpus) as server:
        yield server.url
