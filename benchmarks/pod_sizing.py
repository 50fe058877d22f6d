"""What one pod of deploy/k8s needs and when it is busy, measured on one `bentoml serve`: seconds from start to
ready; the CPU and memory of its whole process tree (BentoML's process manager and its workers, as a
container's cgroup counts them), idle and at their peak under closed-loop loads; and the mean queue wait the
autoscalers scale on (mnist_queue_wait_seconds, from /metrics) at fixed arrival rates. The figures behind the
Deployment's requests, limits, startup probe and autoscaling target; writes the `pod-sizing` section of
docs/deploy.md.

    python -m benchmarks.pod_sizing
    python -m benchmarks.pod_sizing --capacity 1700 --shares 50 100 150 --no-record
    python -m benchmarks.pod_sizing --workers 4      # on a GPU node, with MNIST_DEVICE as it finds it

The server runs on core 0 and the load client (loadtests.asyncload) on core 1, as in the other benchmarks.
Memory is sampled every 0.2 s: RSS (shared pages counted in every process) and PSS (shared pages split
between the processes that map them: closest to what the cgroup is charged). Refused requests (503 when the
queue or the batcher's budget is full) are counted, not failed: memory with a full queue is the point.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from loadtests.asyncload import LoadConfig, run
from loadtests.server import pin_to, running_server

from .report import update_section

MIB = 2**20
# (scenario, closed-loop users): one-image requests flat out, large binary requests, large JSON requests (each
# 512-image JSON body is ~3 MB, parsed into Python floats: the most memory a request form takes per image).
LOADS = (("json-1", 64), ("bytes-256", 64), ("json-512", 128))
QUEUE_WAIT = "mnist_queue_wait_seconds"
DOC = Path("docs/deploy.md")


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of the process and all its descendants, in MiB; a process that ends meanwhile is skipped."""
    rss = pss = 0
    for process in process_tree(pid):
        try:
            info = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss, pss = rss + info.rss, pss + info.pss
    return rss / MIB, pss / MIB


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for process in process_tree(pid):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@dataclass
class Peak:
    rss: float = 0.0
    pss: float = 0.0


@contextmanager
def peak_memory(pid: int, every_s: float = 0.2) -> Iterator[Peak]:
    """The highest RSS and PSS of the process tree while the block runs, sampled by a thread."""
    peak, done = Peak(), threading.Event()

    def sample() -> None:
        while True:
            rss, pss = tree_memory(pid)
            peak.rss, peak.pss = max(peak.rss, rss), max(peak.pss, pss)
            if done.wait(every_s):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def histogram_totals(metrics: str, name: str) -> tuple[float, float]:
    """(sum, count) of an unlabelled histogram in Prometheus' text format; (0, 0) before its first sample."""

    def value(series: str) -> float:
        found = re.search(rf"^{series} (\S+)$", metrics, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    return value(f"{name}_sum"), value(f"{name}_count")


def closed_loop(url: str, pid: int, scenario: str, users: int, duration: float) -> dict:
    """Requests/s, statuses, CPU cores used by the server and its peak memory under one closed-loop load."""
    cpu_before, started = tree_cpu_seconds(pid), time.monotonic()
    with peak_memory(pid) as peak:
        summary = run(LoadConfig(host=url, scenario=scenario, users=users, duration=duration))
    return {
        "load": f"{scenario}, {users} users",
        "requests_per_s": summary["requests_per_s"],
        "statuses": summary["statuses"],
        "cores": (tree_cpu_seconds(pid) - cpu_before) / (time.monotonic() - started),
        "rss": peak.rss,
        "pss": peak.pss,
    }


def open_loop(url: str, rate: float, duration: float) -> dict:
    """The mean queue wait over an open loop at `rate` (the autoscalers' signal), with the client's view."""
    before = histogram_totals(httpx.get(url + "/metrics").text, QUEUE_WAIT)
    summary = run(LoadConfig(host=url, scenario="json-1", rate=rate, duration=duration))
    after = histogram_totals(httpx.get(url + "/metrics").text, QUEUE_WAIT)
    waited, count = after[0] - before[0], after[1] - before[1]
    return summary | {"rate": rate, "mean_wait_ms": 1000 * waited / count if count else float("nan")}


def memory_table(rows: list[dict]) -> str:
    lines = [
        "| load | requests/s | statuses | server CPU (cores) | peak RSS MiB | peak PSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(row["statuses"].items())) or "-"
        rate = f"{row['requests_per_s']:.0f}" if row["requests_per_s"] is not None else "-"
        lines.append(
            f"| {row['load']} | {rate} | {statuses} | {row['cores']:.2f} | {row['rss']:.0f} | {row['pss']:.0f} |"
        )
    return "\n".join(lines)


def wait_table(rows: list[dict], capacity: float) -> str:
    lines = [
        "| offered requests/s | share of capacity | mean queue wait | p50 | p99 | 503 | client send lag p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        refused = row["statuses"].get("503", 0)
        lines.append(
            f"| {row['rate']:.0f} | {row['rate'] / capacity:.0%} | {row['mean_wait_ms']:.1f} ms "
            f"| {row['p50_ms']:.1f} ms | {row['p99_ms']:.1f} ms | {refused} | {row['send_lag_p99_ms']:.0f} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pod_sizing", description=__doc__)
    p.add_argument("--workers", type=int, default=1, help="MNIST_WORKERS of the measured server")
    p.add_argument("--starts", type=int, default=3, help="starts timed to ready; the loads run on the last")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of each load")
    p.add_argument("--capacity", type=float, default=1700.0, help="one-image requests/s the pod can serve")
    p.add_argument(
        "--shares", type=float, nargs="+", default=[25, 50, 75, 100, 125, 150], help="%% of capacity to offer"
    )
    p.add_argument("--no-record", action="store_true", help="print only; leave docs/deploy.md alone")
    args = p.parse_args(argv)
    pin_to("1")
    env = {"MNIST_WORKERS": str(args.workers)}
    starts, memory, waits = [], [], []
    for start in range(args.starts):
        with running_server(env=env, cpus="0") as server:
            starts.append(server.started_in)
            if start < args.starts - 1:
                continue
            time.sleep(2.0)  # settled after start-up
            cpu_before = tree_cpu_seconds(server.pid)
            with peak_memory(server.pid) as idle:
                time.sleep(3.0)
            idle_cores = (tree_cpu_seconds(server.pid) - cpu_before) / 3.0
            memory.append({"load": "idle", "requests_per_s": None, "statuses": {}, "cores": idle_cores, **vars(idle)})
            for share in args.shares:
                waits.append(open_loop(server.url, args.capacity * share / 100, args.duration))
                print(wait_table(waits, args.capacity), flush=True)
            for scenario, users in LOADS:
                memory.append(closed_loop(server.url, server.pid, scenario, users, args.duration))
                print(memory_table(memory), flush=True)
    body = "\n".join(
        [
            f"## One pod, measured (`bentoml serve`, MNIST_WORKERS={args.workers}, model `default`)",
            "",
            f"Start to first 200 on /readyz, {len(starts)} starts: median {statistics.median(starts):.2f} s "
            f"(min {min(starts):.2f}, max {max(starts):.2f}).",
            "",
            f"Mean queue wait (`{QUEUE_WAIT}` from /metrics, the autoscalers' signal) and the client's latency, "
            f"json-1 open loop of {args.duration:.0f} s per rate, capacity taken as {args.capacity:.0f} requests/s "
            "(a client send lag near the latencies means the client, not the server, was saturated):",
            "",
            wait_table(waits, args.capacity),
            "",
            f"CPU and memory of the process tree, closed loops of {args.duration:.0f} s:",
            "",
            memory_table(memory),
        ]
    )
    print(body)
    if not args.no_record:
        command = " ".join(["python -m benchmarks.pod_sizing", *(sys.argv[1:] if argv is None else argv)])
        update_section(f"pod-sizing-{args.workers}", body, command, path=DOC)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
