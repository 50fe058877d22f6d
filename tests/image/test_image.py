"""The images as an operator runs them: built by `make image`, then started, called and stopped as a container.

Slow tier; runs wherever docker or podman (as root) is present, and skips with the reason elsewhere (in CI,
where .ci/run installs podman, a skip would hide a broken image, so it fails). Each variant (cpu, cuda: the
cuda image serves on the CPU where no GPU is) is built once, then:
- started with a read-only root filesystem (a tmpfs at /tmp, the one writable path), it is ready within 30 s
  and answers real test digits through /predict, /predict_bytes and v2 infer with the labels ONNX Runtime gives
  here, an upload with its digit, and /metadata;
- it runs as a non-root user, with no compiler, assembler, linker, gpg, git or package cache in it, and exactly
  the packages (and versions) of its lock file;
- SIGTERM while requests are in flight: every request sent before the drain ended is answered 200, and the
  container exits 0 within the grace period;
- a bad deployment (a missing model, a malformed MNIST_* variable, MNIST_REQUIRE_GPU=1 with no GPU) ends the
  container at once with one line naming the cause and a non-zero exit.
The containers use the host's network (loopback only): no port mapping, so nothing is left in iptables.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from loadtests.payloads import load_sample
from loadtests.server import free_port
from tests.conftest import REPO
from tests.image import harness
from tests.service.conftest import load_runtime

pytestmark = pytest.mark.slow

VARIANTS = ("cpu", "cuda")
READY_WITHIN_S = 30
DRAIN_S = 2
GRACE_S = 30  # as Kubernetes' default terminationGracePeriodSeconds; `stop -t` sends SIGKILL after it
BUILD_TOOLS = ("gcc", "cc", "c++", "g++", "ld", "as", "make", "gpg", "git", "uv")
LIST_PACKAGES = (
    "import importlib.metadata as m; print(*(d.metadata['Name'] + '==' + d.version for d in m.distributions()))"
)
CACHES = ("/root/.cache", "/home/bentoml/.cache", "/var/cache/apt/archives/*.deb", "/var/lib/apt/lists/*_Packages")


@pytest.fixture(scope="module")
def tool() -> tuple[str, dict[str, str]]:
    reason = harness.why_not()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the image tests cannot run in CI: {reason}")
        pytest.skip(reason)
    name = harness.builder()
    env = harness.podman_env() if name == "podman" else dict(os.environ)
    harness.ensure_base_image(name, env)
    return name, env


@pytest.fixture(scope="module", params=VARIANTS)
def image(request: pytest.FixtureRequest, tool: tuple[str, dict[str, str]]) -> Iterator[str]:
    """`make image VARIANT=...`, as the README says; removed (with the build's leftover stages) afterwards."""
    name, env = tool
    variant = request.param
    built = subprocess.run(
        ["make", "image", f"VARIANT={variant}", f"OCI_BACKEND={name}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    tag = f"mnist-serve:{variant}"
    yield tag
    harness.run([name, "rmi", "-f", tag], env, check=False)
    harness.run([name, "image", "prune", "-f"], env, check=False)


class Container:
    def __init__(self, tool: tuple[str, dict[str, str]], image: str, *args: str, env: dict[str, str] | None = None):
        self.tool, self.env = tool
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        flags = ["--network", "host", "--read-only", "--tmpfs", "/tmp"]
        if self.tool == "podman":
            flags.append("--read-only-tmpfs=false")  # only the /tmp this test asks for, as in Kubernetes
        for key, value in (env or {}).items():
            flags += ["-e", f"{key}={value}"]
        started = harness.run(
            [self.tool, "run", "-d", *flags, image, "--host", "127.0.0.1", "--port", str(self.port), *args], self.env
        )
        self.id = started.stdout.strip()
        self.started_at = time.monotonic()

    def wait_ready(self, within: float) -> float:
        while time.monotonic() - self.started_at < within:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return time.monotonic() - self.started_at
            time.sleep(0.2)
        raise AssertionError(f"not ready within {within} s:\n{self.logs()[-3000:]}")

    def exec(self, *command: str) -> str:
        return harness.run([self.tool, "exec", self.id, *command], self.env).stdout

    def shell(self, script: str) -> str:
        return self.exec("sh", "-c", script)

    def logs(self) -> str:
        done = harness.run([self.tool, "logs", self.id], self.env, check=False)
        return done.stdout + done.stderr

    def exit_code(self) -> int:
        waited = harness.run([self.tool, "wait", self.id], self.env, timeout=60)
        return int(waited.stdout.strip().splitlines()[-1])

    def remove(self) -> None:
        harness.run([self.tool, "rm", "-f", self.id], self.env, check=False)


@contextlib.contextmanager
def container(tool: tuple[str, dict[str, str]], image: str, **kwargs) -> Iterator[Container]:  # noqa: ANN003
    box = Container(tool, image, **kwargs)
    try:
        yield box
    finally:
        box.remove()


def test_serves_real_digits_read_only_and_non_root(tool: tuple[str, dict[str, str]], image: str) -> None:
    images, digits = load_sample()
    images, digits = images[:64], digits[:64]
    expected = load_runtime("default").predict(images.astype(np.float32) / 255).label_indices
    assert (expected == digits).mean() > 0.95  # the sample's true labels, as a sanity check of the expectation
    with container(tool, image) as box:
        ready_in = box.wait_ready(READY_WITHIN_S)
        with httpx.Client(base_url=box.url, timeout=30) as client:
            rows = client.post("/predict", json={"images": (images / 255).tolist()})
            raw = client.post("/predict_bytes", json={"data": base64.b64encode(images.tobytes()).decode()})
            v2 = client.post(
                "/v2/models/default/infer",
                json={
                    "inputs": [
                        {"name": "pixels", "shape": [64, 784], "datatype": "UINT8", "data": images.ravel().tolist()}
                    ]
                },
            )
            with (REPO / "docs/examples/seven.png").open("rb") as picture:
                upload = client.post("/predict_image", files={"image": ("seven.png", picture, "image/png")})
            metadata = client.get("/metadata").json()
        for answer in (rows, raw):
            assert answer.status_code == 200, answer.text
            assert [int(p["label"]) for p in answer.json()["predictions"]] == expected.tolist()
        assert v2.status_code == 200, v2.text
        labels = next(o for o in v2.json()["outputs"] if o["name"] == "label")["data"]
        assert [int(label) for label in labels] == expected.tolist()
        assert upload.json()["predictions"][0]["label"] == "7"
        assert (metadata["name"], metadata["execution_provider"]) == ("default", "CPUExecutionProvider")
        assert box.shell("id -u").strip() != "0"
        start_up = box.logs()
        assert "Read-only file system" not in start_up
        assert "W:onnxruntime" not in start_up, start_up  # nothing of ONNX Runtime's warns on a healthy start
        assert box.shell("touch /probe 2>&1 || echo refused").strip().endswith("refused")  # read-only root
    assert ready_in < READY_WITHIN_S


def test_no_build_tools_or_caches_and_exactly_the_locked_packages(tool: tuple[str, dict[str, str]], image: str) -> None:
    variant = image.rsplit(":", 1)[1]
    with container(tool, image) as box:
        box.wait_ready(READY_WITHIN_S)
        found = box.shell(
            f"for t in {' '.join(BUILD_TOOLS)}; do command -v $t; done; ls -d {' '.join(CACHES)} 2>/dev/null; true"
        )
        installed = box.exec("/app/.venv/bin/python", "-c", LIST_PACKAGES)
    assert found.split() == []
    lock = (REPO / f"deploy/image/requirements-{variant}.lock.txt").read_text()
    locked = {canonical(n) + "==" + v for n, v in re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", lock, re.MULTILINE)}
    assert {canonical(line.split("==")[0]) + "==" + line.split("==")[1] for line in installed.split()} == locked


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_sigterm_answers_what_is_in_flight_and_exits_0(tool: tuple[str, dict[str, str]], image: str) -> None:
    outcomes: list[tuple[float, object]] = []  # (when the request was sent, its status or error)
    stop = threading.Event()
    with container(tool, image, env={"MNIST_DRAIN_S": str(DRAIN_S)}) as box:
        box.wait_ready(READY_WITHIN_S)
        body = {"images": [[0.5] * 784] * 64}

        def user() -> None:
            with httpx.Client(base_url=box.url, timeout=30) as client:
                while not stop.is_set():
                    sent = time.monotonic()
                    try:
                        outcomes.append((sent, client.post("/predict", json=body).status_code))
                    except httpx.HTTPError as exc:
                        outcomes.append((sent, type(exc).__name__))
                        time.sleep(0.02)

        users = [threading.Thread(target=user) for _ in range(8)]
        for thread in users:
            thread.start()
        time.sleep(1.5)
        signalled = time.monotonic()
        harness.run([box.tool, "kill", "--signal", "TERM", box.id], box.env)
        status = box.exit_code()
        stopped_after = time.monotonic() - signalled
        stop.set()
        for thread in users:
            thread.join()
    before_drain_ended = [outcome for sent, outcome in outcomes if sent < signalled + DRAIN_S - 0.25]
    assert sum(o == 200 for o in before_drain_ended) > 20
    assert set(before_drain_ended) == {200}, sorted(map(str, before_drain_ended))
    assert status == 0
    assert DRAIN_S <= stopped_after < GRACE_S


@pytest.mark.parametrize(
    ("env", "cause"),
    [
        ({"MNIST_MODEL": "no-such-model"}, "no-such-model"),
        ({"MNIST_MAX_QUEUE": "many"}, "MNIST_MAX_QUEUE"),
        ({"MNIST_REQUIRE_GPU": "1"}, "CUDA"),  # the gpu overlay's setting, on a machine with no GPU
    ],
)
def test_a_bad_deployment_ends_the_container_with_one_line(
    tool: tuple[str, dict[str, str]], image: str, env: dict[str, str], cause: str
) -> None:
    with container(tool, image, env=env) as box:
        status = box.exit_code()
        took = time.monotonic() - box.started_at
        lines = [line for line in box.logs().splitlines() if "mnist-serve: cannot serve" in line]
    assert status != 0
    assert took < READY_WITHIN_S
    assert len(lines) == 1, lines
    assert cause in lines[0]
