"""One quick measurement, for A/B-ing a change: start the service (optionally with extra environment),
load it with the asyncio closed-loop client, print one line.

    python -m loadtests.quick                                     # json-1, 64 users, 10 s
    python -m loadtests.quick MNIST_BATCHING=0                    # the same with batching off
    python -m loadtests.quick --scenario bytes-256 --users 8 MNIST_MAX_BATCH_SIZE=32
    python -m loadtests.quick --repeats 3 MNIST_MAX_LATENCY_MS=300

The server runs on core 0 and the client on core 1. The machines here are shared and noisy (the same
configuration varies by 10-20% between runs): compare A and B interleaved, several times.
"""

from __future__ import annotations

import argparse
import sys

from .asyncload import LoadConfig
from .asyncload import run as run_asyncload
from .server import pin_to
from .targets import TARGETS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.quick", description=__doc__)
    p.add_argument("env", nargs="*", help="NAME=VALUE settings for the server")
    p.add_argument("--target", default="service", choices=sorted(TARGETS))
    p.add_argument("--scenario", default="json-1")
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    if bad := [item for item in args.env if "=" not in item]:
        p.error(f"settings must be NAME=VALUE, got {', '.join(bad)}")
    env = dict(item.split("=", 1) for item in args.env)
    pin_to("1")
    for _ in range(args.repeats):
        with TARGETS[args.target].start(cpus="0", env=env) as server:
            s = run_asyncload(LoadConfig(server.url, args.scenario, args.users, duration=args.duration, warmup=3))
        print(
            f"{args.target} {args.scenario} {' '.join(args.env) or '(defaults)'}: {s['requests_per_s']:.0f} req/s, "
            f"{s['images_per_s']:.0f} images/s, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, "
            f"failures {s['failures'] or 0}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
