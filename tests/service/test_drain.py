"""The drain on SIGTERM (service/drain.py): not ready at once, answers with `Connection: close` meanwhile, and
uvicorn's own handler only after the drain. The whole path in a real `bentoml serve` is in test_http.py."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import bentoml
import httpx
import psutil
import pytest

from loadtests.server import running_server
from service.drain import Drain
from tests.service.conftest import app_settings, serve_in_process


@pytest.fixture
def restore_sigterm():  # noqa: ANN201
    original = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, original)


def run_sigterms(drain: Drain, pauses: list[float], watch_for: float) -> list[tuple[float, str]]:
    """Install `drain` over a recording handler, send SIGTERM after each pause, and return what happened when
    (seconds from the first signal): "draining" once it drains, "handed on" when the old handler ran."""
    events: list[tuple[float, str]] = []

    async def scenario() -> None:
        signal.signal(signal.SIGTERM, lambda signum, frame: events.append((time.monotonic(), "handed on")))
        assert drain.install()
        for pause in pauses:
            await asyncio.sleep(pause)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0.01)
            if drain.draining and not any(what == "draining" for _, what in events):
                events.append((time.monotonic(), "draining"))
        await asyncio.sleep(watch_for)

    asyncio.run(scenario())
    first = events[0][0] if events else 0.0
    return [(round(at - first, 1), what) for at, what in events]


@pytest.mark.usefixtures("restore_sigterm")
def test_sigterm_drains_first_and_hands_on_after_the_drain() -> None:
    events = run_sigterms(Drain(0.5), pauses=[0.0], watch_for=0.8)
    assert [what for _, what in events] == ["draining", "handed on"]
    assert events[1][0] >= 0.4  # not before the drain's seconds


@pytest.mark.usefixtures("restore_sigterm")
def test_a_second_sigterm_ends_the_drain_at_once_and_hands_on_once() -> None:
    events = run_sigterms(Drain(5.0), pauses=[0.0, 0.1], watch_for=0.2)
    assert [what for _, what in events] == ["draining", "handed on"]
    assert events[1][0] < 1.0


@pytest.mark.usefixtures("restore_sigterm")
def test_no_drain_hands_sigterm_straight_on() -> None:
    drain = Drain(0)
    events = run_sigterms(drain, pauses=[0.0], watch_for=0.05)
    assert events[0][1] == "handed on"
    assert drain.draining  # and not ready while uvicorn stops


def test_off_the_main_thread_it_installs_nothing() -> None:
    before = signal.getsignal(signal.SIGTERM)

    async def install_in_a_thread() -> bool:
        return await asyncio.to_thread(Drain(5).install)

    assert asyncio.run(install_in_a_thread()) is False
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_draining_worker_is_not_ready_and_closes_connections_after_answers() -> None:
    with serve_in_process(app_settings()) as client:
        assert client.get("/readyz").status_code == 200
        one = {"images": [[0.0] * 784]}
        assert client.post("/predict", json=one).headers.get("connection") != "close"
        assert client.get("/v2/health/ready").status_code == 200
        bentoml.get_current_service().serving.drain.draining = True
        assert client.get("/readyz").status_code == 503
        assert client.get("/v2/health/ready").status_code == 503  # KServe's readiness, as /readyz
        assert client.get("/v2/models/default/ready").status_code == 503
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/livez").status_code == 200  # alive: Kubernetes must not restart it meanwhile
        for answer in (client.post("/predict", json=one), client.get("/readyz"), client.post("/predict", json={})):
            assert answer.headers["connection"] == "close"
        assert client.post("/predict", json=one).status_code == 200  # still answered while draining


@pytest.mark.slow
def test_a_real_server_drains_on_sigterm_then_exits_0() -> None:
    """`bentoml serve` with MNIST_DRAIN_S=2: after SIGTERM to the whole process group (as a container runtime
    stops it), /readyz is 503 at once, a request on an open keep-alive connection is answered with
    `Connection: close`, and the server exits 0 after the drain."""
    one = {"images": [[0.0] * 784]}
    with running_server(env={"MNIST_DRAIN_S": "2"}) as server, httpx.Client(base_url=server.url) as client:
        assert client.post("/predict", json=one).status_code == 200  # the connection is open and kept
        os.killpg(server.pid, signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.3)
        assert client.get("/readyz").status_code == 503
        answer = client.post("/predict", json=one)
        assert (answer.status_code, answer.headers["connection"]) == (200, "close")
        status = psutil.Process(server.pid).wait(timeout=30)
        stopped_after = time.monotonic() - signalled
    assert status == 0
    assert 2.0 <= stopped_after < 10.0
