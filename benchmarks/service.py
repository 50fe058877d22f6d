"""Service benchmarks: start-up time to ready, and a first throughput figure.

    python -m benchmarks.service                    # writes the `service` section of docs/benchmarks.md
    python -m benchmarks.service --starts 5 --duration 30

Start-up is timed from spawning `bentoml serve` to the first 200 from /readyz (model verified, session
created, warmed up); the service's own share of it is `startup_seconds` from /metadata. Throughput: one
image per JSON request from 64 closed-loop users, server pinned to core 0, load generator to core 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import httpx

from loadtests.asyncload import LoadConfig, run
from loadtests.server import pin_to, running_server

from .report import update_section


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.service", description=__doc__)
    p.add_argument("--starts", type=int, default=3)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--model", default="default")
    args = p.parse_args(argv)
    pin_to("1")
    env = {"MNIST_MODEL": args.model}
    starts, model_load = [], []
    for _ in range(args.starts):
        with running_server(env=env, cpus="0") as server:
            starts.append(server.started_in)
            model_load.append(httpx.post(f"{server.url}/metadata", json={}).json()["startup_seconds"])
    print(f"start-up to ready: {[round(s, 2) for s in starts]} s; model load + warm-up {model_load} s")
    with running_server(env=env, cpus="0") as server:
        summary = run(LoadConfig(host=server.url, scenario="json-1", users=args.users, duration=args.duration))
    print(summary)
    body = "\n".join(
        [
            "## Service",
            "",
            f"### Start-up to ready (`bentoml serve`, model `{args.model}`, {args.starts} starts)",
            "",
            "| | median | min | max |",
            "|---|---|---|---|",
            f"| spawn to first 200 on /readyz | {statistics.median(starts):.2f} s | {min(starts):.2f} s "
            f"| {max(starts):.2f} s |",
            f"| of which model verify + load + warm-up | {statistics.median(model_load):.3f} s "
            f"| {min(model_load):.3f} s | {max(model_load):.3f} s |",
            "",
            f"### First throughput: 1 image per JSON request, {args.users} asyncio closed-loop users, "
            f"{args.duration:.0f} s, server on core 0, load on core 1",
            "",
            "| requests/s | p50 | p90 | p99 | failed |",
            "|---|---|---|---|---|",
            f"| {summary['requests_per_s']:.0f} | {summary['p50_ms']:.1f} ms | {summary['p90_ms']:.1f} ms "
            f"| {summary['p99_ms']:.1f} ms | {sum(summary['failures'].values())} |",
        ]
    )
    command = "python -m benchmarks.service " + " ".join(sys.argv[1:] if argv is None else argv)
    update_section("service", body, command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
