"""The adaptive batcher alone, in one event loop, under an open loop: what it adds to latency when a model call
costs what it costs on the CPU (grows with the batch) and what it costs on a GPU (flat).

A simulation, not a measurement of a model: the batcher is the service's own, but no model runs. Each call
busy-waits for a cost given by a formula (COST_MODELS), fitted to figures quoted below; the "gpu" rows are a
GPU-shaped cost simulated on this CPU, not a GPU run.

Issue 10 measured p99 96 ms at half capacity on an H100 where the CPU gave 4-6 ms at the same rate. This
takes HTTP, sockets and the load generator out: the service's own batcher (`RecoveringCorkDispatcher`,
BentoML's CorkDispatcher) is driven by requests that each first burn the event loop's time for parsing and
validation (`--request-us`), as the real server's requests do, and whose batch call burns the model's cost
(busy-waits in the loop, as the service's inline ONNX Runtime call does). Latency is timed from each
request's scheduled arrival. The garbage collector is off during each run (`--gc` leaves it on): its pauses
depend on this script's allocations, not the service's, and would pose as the batcher's.

    python -m benchmarks.batcher                          # both cost models at 25%, 50%, 75% of capacity
    python -m benchmarks.batcher --tick-ms 0.1            # BentoML's 1 ms polling interval made 0.1 ms
    python -m benchmarks.batcher --record                 # and write the table to docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.bentoml_internals import RecoveringCorkDispatcher

from .report import update_section

# us per model call of n images, as a line through quoted figures (not measured by this command): the CPU's
# from `loadtests.baselines.ort_ceiling` on the 2-core machine, the GPU's from issue 10 (an H100)
FITTED_TO: dict[str, dict[int, float]] = {
    "cpu": {1: 50.0, 256: 2470.0},
    "gpu": {1: 104.0, 256: 170.0, 1024: 419.0},
}
COST_MODELS: dict[str, Callable[[int], float]] = {
    "cpu": lambda n: 50.0 + 9.5 * n,
    "gpu": lambda n: 104.0 + 0.3 * n,
}


def burn(us: float) -> None:
    """Hold the event loop's thread for `us` microseconds, as parsing or an inline model call does."""
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass


@dataclass(frozen=True)
class Result:
    cost: str
    collect: bool
    tick_ms: float
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_batch: float
    learned_wait_ms: float


async def open_loop(
    cost: str,
    rate: float,
    seconds: float,
    request_us: float,
    max_latency_ms: int,
    tick_ms: float = 1.0,
    collect: bool = False,
) -> Result:
    model_us = COST_MODELS[cost]
    batches: list[int] = []

    async def run_batch(requests: list[int]) -> list[int]:
        batches.append(len(requests))
        burn(model_us(len(requests)))
        return requests

    dispatcher = RecoveringCorkDispatcher(
        max_latency_in_ms=max_latency_ms, max_batch_size=1024, fallback=lambda: None, get_batch_size=lambda _: 1
    )
    dispatcher.TICKET_INTERVAL = tick_ms / 1000  # how long the controller sleeps while it holds or a call runs
    infer = dispatcher(run_batch)
    latencies: list[float] = []

    async def request(scheduled: float) -> None:
        burn(request_us)
        await infer(1)
        latencies.append(time.perf_counter() - scheduled)

    await infer(0)  # starts the batcher's controller and its warm-up
    await asyncio.sleep(0.5)
    batches.clear()
    if not collect:
        gc.disable()
    try:
        start, tasks = time.perf_counter(), []
        for i in range(int(rate * seconds)):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(request(scheduled)))
        await asyncio.gather(*tasks)
    finally:
        gc.enable()
    ms = sorted(1000 * x for x in latencies)
    return Result(
        cost=cost,
        collect=collect,
        tick_ms=tick_ms,
        rate=rate,
        p50_ms=ms[len(ms) // 2],
        p99_ms=ms[int(len(ms) * 0.99)],
        max_ms=ms[-1],
        mean_batch=statistics.fmean(batches) if batches else 0.0,
        learned_wait_ms=1000 * dispatcher.optimizer.wait,
    )


def capacity(cost: str, request_us: float) -> float:
    """Requests per second the loop can take when batches are large: each request's own work plus its share
    of a 64-image call."""
    return 1e6 / (request_us + COST_MODELS[cost](64) / 64)


def table(results: list[Result], request_us: float) -> str:
    rows = [
        f"| {r.cost} | {'on' if r.collect else 'off'} | {r.tick_ms:g} | {r.rate:.0f} | {r.p50_ms:.1f} "
        f"| {r.p99_ms:.1f} | {r.max_ms:.1f} | {r.mean_batch:.1f} | {r.learned_wait_ms:.2f} |"
        for r in results
    ]
    return "\n".join(
        [
            "## The batcher alone: open loop, CPU-like vs GPU-like model cost (simulated)",
            "",
            "A simulation: the batcher is the service's own, but no model runs. Each request burns "
            f"{request_us:.0f} us of the",
            "event loop before it joins the batcher (the server's parsing and validation); a call of n images",
            "busy-waits 50 + 9.5n us (`cpu`, fitted to ort_ceiling on this machine) or 104 + 0.3n us (`gpu`, fitted",
            "to issue 10's H100 figures, quoted, not measured here): the `gpu` rows are a GPU-shaped cost on this",
            "CPU, not a GPU. Latency from each request's scheduled arrival; `learned wait` is BentoML's",
            "`optimizer.wait` at the end.",
            "",
            "| cost | gc | poll ms | offered /s | p50 ms | p99 ms | max ms | mean batch | learned wait ms |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.batcher", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--costs", nargs="+", choices=sorted(COST_MODELS), default=sorted(COST_MODELS))
    p.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75], help="of capacity")
    p.add_argument("--seconds", type=float, default=10.0, help="per open-loop run")
    p.add_argument("--request-us", type=float, default=300.0, help="event-loop time per request outside the batcher")
    p.add_argument("--max-latency-ms", type=int, default=1000)
    p.add_argument("--tick-ms", type=float, nargs="+", default=[1.0], help="the batcher's polling interval(s)")
    p.add_argument("--rounds", type=int, default=1, help="runs of each setting")
    p.add_argument("--gc", action="store_true", help="also run each setting with the garbage collector on")
    p.add_argument("--record", action="store_true", help="write the table to docs/benchmarks.md")
    args = p.parse_args(argv)
    results, collectors = [], [False, True] if args.gc else [False]
    for _ in range(args.rounds):
        for cost in args.costs:
            for tick_ms, collect, fraction in itertools.product(args.tick_ms, collectors, args.fractions):
                rate = fraction * capacity(cost, args.request_us)
                run = open_loop(cost, rate, args.seconds, args.request_us, args.max_latency_ms, tick_ms, collect)
                results.append(asyncio.run(run))
                print(results[-1])
    text = table(results, args.request_us)
    print(text)
    if args.record:
        update_section("batcher-open-loop", text, "python -m benchmarks.batcher " + " ".join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
