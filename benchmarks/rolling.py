"""Scale-out on one machine: replicas behind a real load balancer, restarted one at a time under load (as a rolling
update does) and one of them SIGKILLed. Writes the `rolling` section of docs/benchmarks.md.

    python -m benchmarks.rolling                          # 2 replicas behind HAProxy, an 800/s open loop
    python -m benchmarks.rolling --drain 0                # the same with no drain on SIGTERM, for comparison
    python -m benchmarks.rolling --replicas 8 --rate 12000 --load-cpus 8-15   # scaling, on a bigger machine

Each replica is a `bentoml serve` of the service (MNIST_DRAIN_S=--drain) on its own loopback port. Debian's
HAProxy balances them round-robin and health-checks `GET /readyz` every 0.5 s (down after 2 failures, up after
2 passes), with `retries 2` and `option redispatch`: the Deployment's readiness probe, checked faster. The
project's open-loop client (loadtests.asyncload) sends to HAProxy throughout.

1. Rolling restart: each replica in turn gets a plain SIGTERM on its main process, as a container runtime
   sends it (no preStop pause), is waited for, started again and waited for until HAProxy sees it up.
   Zero loss means every request got a 200 or a 503 with Retry-After (the service shedding load); any other
   status, a 503 without Retry-After (HAProxy's own) or a connection error is a loss.
2. SIGKILL: one replica's whole process group is killed under load (as a container's cgroup is). Only its
   requests in flight may fail; reported with the seconds until HAProxy marked it down.

On 2 cores this shows correctness, not scaling: the replicas, HAProxy and the load client share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from loadtests.asyncload import UNTOLD_503, LoadConfig, LoadResult, run_load
from loadtests.payloads import Payloads
from loadtests.server import REPO, bentoml_command, free_port, pinned

from .report import update_section

CHECK = "inter 500ms fall 2 rise 2"  # HAProxy's health check of each replica: GET /readyz


@dataclass(frozen=True)
class RollingConfig:
    replicas: int = 2
    rate: float = 800.0  # requests per second, open loop, through the balancer
    scenario: str = "json-1"
    drain_s: int = 5  # MNIST_DRAIN_S of every replica (the service's default)
    settle_s: float = 2.0  # load between two restarts, once the restarted replica is up again
    server_cpus: str | None = None  # taskset list for the replicas (None: anywhere)
    load_cpus: str | None = None  # and for HAProxy and the load client


@dataclass
class Replica:
    """One `bentoml serve` process group on its own port."""

    port: int
    env: dict[str, str]
    cpus: str | None
    home: Path
    proc: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.home / f"replica-{self.port}.log"

    def start(self) -> None:
        command = pinned(bentoml_command(self.port), self.cpus)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"replica on {self.port} exited {self.proc.returncode}: see {self.log}")
            time.sleep(0.1)
        raise TimeoutError(f"replica on {self.port} not ready in {timeout} s")

    def terminate(self) -> float:
        """SIGTERM to the main process only (as `docker stop` or the kubelet sends it); seconds until it exited."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL to the main process and every process under it, as a container's cgroup is killed (BentoML's
        workers are not in the main process's group)."""
        assert self.proc is not None
        main = psutil.Process(self.proc.pid)
        for process in [*main.children(recursive=True), main]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


class HAProxy:
    """Debian's HAProxy in front of the replicas, with an admin socket to read what its health checks decided."""

    def __init__(self, ports: list[int], workdir: Path, cpus: str | None) -> None:
        if shutil.which("haproxy") is None:
            raise SystemExit("benchmarks.rolling needs HAProxy: apt-get install haproxy")
        self.port = free_port()
        self.socket = workdir / "haproxy.sock"
        servers = "\n".join(f"    server r{i} 127.0.0.1:{port} check" for i, port in enumerate(ports))
        config = workdir / "haproxy.cfg"
        config.write_text(
            f"""global
    stats socket {self.socket} mode 600 level admin
    maxconn 8192
defaults
    mode http
    timeout connect 1s
    timeout client 35s
    timeout server 35s
    retries 2
    option redispatch
frontend front
    bind 127.0.0.1:{self.port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server {CHECK}
{servers}
"""
        )
        self.proc = subprocess.Popen(
            pinned(["haproxy", "-db", "-f", str(config)], cpus), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def states(self) -> dict[str, str]:
        """Server name -> UP / DOWN / ... as HAProxy's checks see it now."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(b"show stat\n")
            text = b"".join(iter(lambda: s.recv(65536), b"")).decode()
        rows = [line.split(",") for line in text.splitlines() if line and not line.startswith("#")]
        return {row[1]: row[17] for row in rows if row[0] == "replicas" and row[1] not in ("FRONTEND", "BACKEND")}

    def wait_for(self, server: str, state: str, timeout: float = 60.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if self.states().get(server, "").startswith(state):
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"HAProxy did not see {server} {state} within {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def load_in_background(cfg: LoadConfig, payloads: Payloads) -> tuple[threading.Thread, list[LoadResult]]:
    """The open loop in a thread of its own (its own event loop), while this thread restarts replicas."""
    out: list[LoadResult] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(run_load(cfg, payloads))), daemon=True)
    thread.start()
    return thread, out


def outcome(result: LoadResult) -> dict[str, int]:
    """Requests by what they got: 200, 503 (shed, with Retry-After), and the losses, in all and by kind (any
    other status, a 503 without Retry-After, a connection error)."""
    untold = result.failures.get(UNTOLD_503, 0)  # not the service's shedding: a balancer's own 503
    counts = {"sent": sum(result.statuses.values()), "200": result.statuses.get(200, 0), "503": -untold}
    losses = {UNTOLD_503: untold} if untold else {}
    for status, n in result.statuses.items():
        if status == 503:
            counts["503"] += n
        elif status != 200:
            losses[f"HTTP {status}" if isinstance(status, int) else str(status)] = n
    return {**counts, "lost": sum(losses.values()), **{f"lost as {kind}": n for kind, n in losses.items()}}


def losses(counts: dict[str, int]) -> str:
    kinds = [f"{n} {key.removeprefix('lost as ')}" for key, n in counts.items() if key.startswith("lost as ")]
    return ", ".join(kinds) or "none"


@contextmanager
def cluster(cfg: RollingConfig) -> Iterator[tuple[list[Replica], HAProxy]]:
    with ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mnist-rolling-")))
        env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "MNIST_DRAIN_S": str(cfg.drain_s)}
        replicas = []
        for i in range(cfg.replicas):
            # each its own BENTOML_HOME: a starting server empties its Prometheus directory
            replica = Replica(free_port(), {**env, "BENTOML_HOME": str(home / f"home-{i}")}, cfg.server_cpus, home)
            stack.callback(replica.stop)
            replica.start()
            replicas.append(replica)
        for replica in replicas:
            replica.wait_ready()
        balancer = HAProxy([r.port for r in replicas], home, cfg.load_cpus)
        stack.callback(balancer.stop)
        for i in range(cfg.replicas):
            balancer.wait_for(f"r{i}", "UP")
        yield replicas, balancer


def rolling_restart(cfg: RollingConfig, payloads: Payloads) -> tuple[dict[str, int], list[float]]:
    """Every replica restarted in turn under load; the outcome and each replica's seconds from SIGTERM to exit."""
    per_replica = cfg.drain_s + 8.0 + cfg.settle_s  # drain, exit, start, HAProxy's rise: generous
    with cluster(cfg) as (replicas, balancer):
        load = LoadConfig(
            host=balancer.url, scenario=cfg.scenario, rate=cfg.rate, warmup=2.0, duration=per_replica * len(replicas)
        )
        thread, result = load_in_background(load, payloads)
        time.sleep(load.warmup + cfg.settle_s)
        stopped_in = []
        for i, replica in enumerate(replicas):
            stopped_in.append(replica.terminate())
            replica.start()
            replica.wait_ready()
            balancer.wait_for(f"r{i}", "UP")
            time.sleep(cfg.settle_s)
        thread.join()
    return outcome(result[0]), stopped_in


def kill_one(cfg: RollingConfig, payloads: Payloads) -> tuple[dict[str, int], float]:
    """One replica SIGKILLed under load; the outcome and the seconds until HAProxy marked it down."""
    with cluster(cfg) as (replicas, balancer):
        load = LoadConfig(host=balancer.url, scenario=cfg.scenario, rate=cfg.rate, warmup=2.0, duration=10.0)
        thread, result = load_in_background(load, payloads)
        time.sleep(load.warmup + 3.0)
        replicas[0].kill()
        marked_down_in = balancer.wait_for("r0", "DOWN")
        thread.join()
    return outcome(result[0]), marked_down_in


def report(
    cfg: RollingConfig, rolled: dict[str, int], stopped_in: list[float], killed: dict[str, int], down: float
) -> str:
    stops = ", ".join(f"{s:.1f}" for s in stopped_in)
    return "\n".join(
        [
            f"{cfg.replicas} replicas (`bentoml serve`, MNIST_DRAIN_S={cfg.drain_s}) behind HAProxy "
            f"(`GET /readyz` {CHECK}, retries 2, redispatch), an open loop of {cfg.rate:g} {cfg.scenario} "
            "requests/s through it. A loss is any answer but 200 or 503, or a connection error.",
            "",
            "| scenario | sent | 200 | 503 | lost | lost as | |",
            "|---|---:|---:|---:|---:|---|---|",
            f"| each replica SIGTERMed and restarted in turn | {rolled['sent']} | {rolled['200']} | {rolled['503']} "
            f"| {rolled['lost']} | {losses(rolled)} | SIGTERM to exit: {stops} s |",
            f"| one replica SIGKILLed | {killed['sent']} | {killed['200']} | {killed['503']} | {killed['lost']} "
            f"| {losses(killed)} | HAProxy marked it down {down:.2f} s after the kill |",
            "",
            f"On {os.cpu_count()} cores this shows correctness, not scaling: the replicas, HAProxy and the load "
            "client share them. On a bigger machine: `python -m benchmarks.rolling --replicas 8 --rate 12000 "
            "--server-cpus 0-7 --load-cpus 8-15 --no-record`.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rolling", description=__doc__)
    p.add_argument("--replicas", type=int, default=RollingConfig.replicas)
    p.add_argument("--rate", type=float, default=RollingConfig.rate, help="requests per second through HAProxy")
    p.add_argument("--scenario", default=RollingConfig.scenario)
    p.add_argument("--drain", type=int, default=RollingConfig.drain_s, help="MNIST_DRAIN_S of every replica")
    p.add_argument("--settle", type=float, default=RollingConfig.settle_s)
    p.add_argument("--server-cpus", help="taskset CPU list for the replicas")
    p.add_argument("--load-cpus", help="taskset CPU list for HAProxy and the load client")
    p.add_argument("--no-record", action="store_true", help="print only; do not write docs/benchmarks.md")
    args = p.parse_args(argv)
    if args.replicas < 2:
        p.error("--replicas: at least 2 (a rolling restart of one replica has nowhere to send its load)")
    cfg = RollingConfig(
        args.replicas, args.rate, args.scenario, args.drain, args.settle, args.server_cpus, args.load_cpus
    )
    payloads = Payloads.load(cfg.scenario)
    rolled, stopped_in = rolling_restart(cfg, payloads)
    print("rolling restart:", rolled, "SIGTERM to exit (s):", [round(s, 2) for s in stopped_in], flush=True)
    killed, down = kill_one(cfg, payloads)
    print("one replica SIGKILLed:", killed, f"marked down after {down:.2f} s", flush=True)
    text = report(cfg, rolled, stopped_in, killed, down)
    print(text)
    if not args.no_record:
        section = "rolling" if cfg.drain_s == RollingConfig.drain_s else f"rolling-drain-{cfg.drain_s}"
        update_section(section, text, "python -m benchmarks.rolling " + " ".join(argv or sys.argv[1:]))
    return 0 if rolled["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
