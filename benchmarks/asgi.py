"""The app's own CPU per request, in-process: the BentoML app built by `to_asgi()`, called directly with
in-memory requests (no sockets, no load generator), so that A/B comparisons of the service's code are not
drowned by the HTTP noise of a shared machine (10-20% between identical HTTP runs here).

    python -m benchmarks.asgi                       # json-1, 32 concurrent callers, 5 rounds of 6000
    python -m benchmarks.asgi --scenario bytes-256 --requests 600
    cd ../other-checkout && python -m benchmarks.asgi     # the same on another commit, for an A/B

Prints microseconds per request for each round; compare the minimums of two commits run alternately.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from loadtests.payloads import Payloads


def asgi_scope(path: str, body: bytes, content_type: str) -> dict:
    headers = [
        (b"host", b"bench"),
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 3000),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.asgi", description=__doc__)
    p.add_argument("--scenario", default="json-1")
    p.add_argument("--requests", type=int, default=6000, help="per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=32)
    args = p.parse_args(argv)
    from starlette.testclient import TestClient

    from service.app import MNISTService

    request = Payloads.load(args.scenario).next()
    body = request.body
    scope = asgi_scope(request.path, body, request.content_type)
    with TestClient(MNISTService.to_asgi()) as client:  # runs the app's start-up: the service and its model
        app = client.app

        async def one() -> None:
            sent: list[dict] = []

            async def receive() -> dict:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict) -> None:
                sent.append(message)

            await app(dict(scope), receive, send)
            if sent[0]["status"] != 200:
                raise RuntimeError(f"{sent[0]['status']}: {sent[-1].get('body', b'')[:200]!r}")

        async def round_us(n: int) -> float:
            async def caller() -> None:
                for _ in range(n // args.concurrency):
                    await one()

            started = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(args.concurrency)))
            return (time.perf_counter() - started) / n * 1e6

        async def bench() -> list[float]:
            await round_us(args.requests // 3)  # warm-up: the batcher fits its cost model
            return [round(await round_us(args.requests), 1) for _ in range(args.rounds)]

        rounds = client.portal.call(bench)
    print(f"{args.scenario}, {args.concurrency} concurrent: us per request {rounds}, min {min(rounds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
