"""A small asyncio load generator: closed loop (N users) or open loop (a fixed arrival rate).

    python -m loadtests.asyncload --host http://127.0.0.1:3000 --users 64 --duration 20
    python -m loadtests.asyncload --host http://127.0.0.1:3000 --rate 400 --duration 20

Why beside Locust: Locust is closed-loop, so when the server saturates its users simply wait and the
queueing delay never shows (coordinated omission), and it reports whole milliseconds. The open loop here
sends on a fixed schedule whether or not earlier requests have returned, and times each request from
the moment it was *due*, so a stalled server shows up as latency. Latencies are kept in microseconds.

What an open loop reports of its own rate: `offered_per_s` (the rate asked for), `sent_per_s` (the rate its
sends actually left at: below the offered rate when this client cannot keep up), `send_lag_*` (how late they
left) and `requests_per_s` (answers received over the time from the first measured send to the last answer).
Every answer is checked, its digits against their true labels included: `accuracy` is the share right.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .payloads import Payloads, check_response, read_answer, right_digits

UNTOLD_503 = "HTTP 503 without Retry-After"


@dataclass(frozen=True)
class LoadConfig:
    host: str = "http://127.0.0.1:3000"
    scenario: str = "json-1"  # see payloads.SCENARIOS
    users: int = 64  # closed loop: concurrent users, each sending its next request when the last returns
    rate: float | None = None  # open loop: requests per second; overrides users
    duration: float = 20.0  # seconds of measurement
    warmup: float = 3.0  # seconds of load before measuring (BentoML's batcher fits its cost model first)
    timeout: float = 30.0
    max_in_flight: int = 2048  # open loop: cap on outstanding requests, so an overloaded server cannot exhaust us
    connections: int = 0  # open loop: most connections at once (0: one more whenever all are busy)


@dataclass
class LoadResult:
    latencies_us: list[float] = field(default_factory=list)
    latencies_by_status: dict[int, list[float]] = field(default_factory=dict)  # served and refused, apart
    statuses: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)  # reason -> count (HTTP status or wrong answer)
    images: int = 0
    wall: float = 0.0
    dropped: int = 0  # open loop: sends skipped because max_in_flight was reached
    send_lag_us: list[float] = field(default_factory=list)  # open loop: how late each send left (client saturation)
    offered_per_s: float | None = None  # open loop: the rate asked for
    sent: int = 0  # open loop: requests that left in the measured window (dropped ones not included)
    last_send: float = 0.0  # open loop: perf_counter() when the last of them left
    send_seconds: float = 0.0  # open loop: from the window's start to the last send, at least the window's length
    ok: int = 0  # 200 and a right-shaped, self-consistent answer, right about its digits
    digits: int = 0  # images in readable answers whose true label is known
    right: int = 0  # of those, labelled as their true digit

    def summary(self) -> dict[str, float | int | dict | None]:
        lat = np.array(self.latencies_us) / 1000.0 if self.latencies_us else np.array([np.nan])
        lag = np.array(self.send_lag_us) / 1000.0 if self.send_lag_us else np.array([0.0])
        return {
            "requests": sum(self.statuses.values()),
            "requests_per_s": sum(self.statuses.values()) / self.wall if self.wall else 0.0,
            "ok_requests": self.ok,
            "images_per_s": self.images / self.wall if self.wall else 0.0,
            "failures": dict(self.failures),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "dropped": self.dropped,
            **{f"p{q}_ms": float(np.percentile(lat, q)) for q in (50, 90, 95, 99)},
            "max_ms": float(lat.max()),
            "offered_per_s": self.offered_per_s,
            "sent_per_s": self.sent / self.send_seconds if self.send_seconds else None,
            "send_lag_p50_ms": float(np.percentile(lag, 50)),
            "send_lag_p99_ms": float(np.percentile(lag, 99)),
            "send_lag_max_ms": float(lag.max()),
            "accuracy": self.right / self.digits if self.digits else None,
            "wrong_digits": self.digits - self.right,
            "mean_ms": float(lat.mean()),
            "wall_s": self.wall,
        }


async def _send(session, cfg: LoadConfig, payloads: Payloads, result: LoadResult | None, due: float) -> None:  # noqa: ANN001
    import aiohttp

    request = payloads.next()
    if result is not None and result.offered_per_s is not None:  # open loop: when the request really leaves
        left = time.perf_counter()  # not when its task was made: a busy client runs its tasks late
        result.send_lag_us.append((left - due) * 1e6)
        result.sent += 1
        result.last_send = max(result.last_send, left)
    try:
        async with session.post(cfg.host + request.path, **request.kwargs) as resp:
            body = await resp.read()
            status = resp.status
            response_headers = resp.headers
    except (TimeoutError, aiohttp.ClientError) as exc:
        if result is not None:
            result.statuses[type(exc).__name__] += 1
            result.failures[type(exc).__name__] += 1
        return
    if result is None:
        return
    latency = (time.perf_counter() - due) * 1e6
    result.latencies_us.append(latency)
    result.latencies_by_status.setdefault(status, []).append(latency)
    result.statuses[status] += 1
    if status != 200:
        # a 503 the service sheds says when to retry; one without Retry-After came from elsewhere (a balancer)
        told = status != 503 or "retry-after" in response_headers
        result.failures[f"HTTP {status}" if told else UNTOLD_503] += 1
        return
    answer = read_answer(body, response_headers)
    problem = answer if isinstance(answer, str) else check_response(answer, request)
    if not isinstance(answer, str) and request.digits:
        result.digits += len(request.digits)
        result.right += right_digits(answer, request)
    if problem:
        result.failures[problem] += 1
    else:
        result.ok += 1
        result.images += request.images


async def run_load(cfg: LoadConfig, payloads: Payloads) -> LoadResult:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=cfg.connections if cfg.rate else cfg.users, force_close=False)
    timeout = aiohttp.ClientTimeout(total=cfg.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if cfg.rate:
            return await _open_loop(session, cfg, payloads)
        return await _closed_loop(session, cfg, payloads)


async def _closed_loop(session, cfg: LoadConfig, payloads: Payloads) -> LoadResult:  # noqa: ANN001
    result = LoadResult()
    start = time.perf_counter()
    measure_from, stop_at = start + cfg.warmup, start + cfg.warmup + cfg.duration

    async def user() -> None:
        while (now := time.perf_counter()) < stop_at:
            await _send(session, cfg, payloads, result if now >= measure_from else None, now)

    await asyncio.gather(*(user() for _ in range(cfg.users)))
    result.wall = time.perf_counter() - measure_from
    return result


async def _open_loop(session, cfg: LoadConfig, payloads: Payloads) -> LoadResult:  # noqa: ANN001
    result = LoadResult(offered_per_s=cfg.rate)
    interval = 1.0 / cfg.rate
    start = time.perf_counter()
    measure_from = start + cfg.warmup
    total = int((cfg.warmup + cfg.duration) * cfg.rate)
    in_flight: set[asyncio.Task] = set()
    for i in range(total):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= cfg.max_in_flight:
            result.dropped += due >= measure_from
            continue
        task = asyncio.create_task(_send(session, cfg, payloads, result if due >= measure_from else None, due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
    result.wall = time.perf_counter() - measure_from  # to the last answer: the answers' rate, not the offered one
    # on time, the last send leaves one interval before the window's end: the window's length is the floor
    result.send_seconds = max(result.last_send - measure_from, cfg.duration)
    return result


def run(cfg: LoadConfig, payloads: Payloads | None = None) -> dict:
    """Run one load test and return its summary."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(run_load(cfg, payloads or Payloads.load(cfg.scenario))).summary()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.asyncload", description=__doc__)
    p.add_argument("--host", default=LoadConfig.host)
    p.add_argument("--scenario", default=LoadConfig.scenario, help="json-1, json-N, bytes-N, image")
    p.add_argument("--users", type=int, default=LoadConfig.users)
    p.add_argument("--rate", type=float, help="open loop at this many requests per second")
    p.add_argument("--duration", type=float, default=LoadConfig.duration)
    p.add_argument("--warmup", type=float, default=LoadConfig.warmup)
    args = p.parse_args(argv)
    summary = run(LoadConfig(**vars(args)))
    print(json.dumps(summary, indent=2))
    return 0 if not summary["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
