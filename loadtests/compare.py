"""The performance campaign in one run: the service against its baselines, side by side, on the same machine.

    python -m loadtests.compare                  # writes the `load` section of docs/benchmarks.md (~5 min)
    python -m loadtests.compare --duration 60

1. the in-process ceiling: ONNX Runtime called directly at batch 1, 64 and 256;
2. one image per JSON request, 64 Locust users, 30 s, for the service, the service with batching off and
   the minimal FastAPI baseline (server on core 0, Locust on core 1);
3. 256 images per request through the binary form, and through the Open Inference Protocol (v2) with binary
   tensors, against the ceiling at batch 256;
4. open loop (fixed arrival rates) at 25%, 50% and 75% of the service's measured capacity.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.report import update_section

from .asyncload import LoadConfig
from .asyncload import run as run_asyncload
from .baselines.ort_ceiling import ceiling
from .run import RunConfig, run
from .server import pin_to
from .targets import TARGETS


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.compare", description=__doc__)
    p.add_argument("--duration", type=int, default=30)
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--bytes-users", type=int, default=8)
    p.add_argument("--out", default="results/compare")
    args = p.parse_args(argv)
    results = measure(args.users, args.bytes_users, args.duration, Path(args.out))
    command = "python -m loadtests.compare " + " ".join(sys.argv[1:] if argv is None else argv)
    update_section("load", report(results, args.users, args.bytes_users, args.duration), command.strip())
    return 0


def measure(users: int, bytes_users: int, duration: int, out: Path) -> dict[str, Any]:
    """Every run, side by side, written to out/compare.json: the ONNX Runtime ceiling, one image per JSON request
    against each target, 256 images per request (binary and v2), the open loop at fractions of capacity."""
    pin_to("0")  # the ceiling runs where the server will
    ceil = {row["batch"]: row for row in ceiling([1, 64, 256])}
    pin_to(None)

    json1 = {}
    for target in ("service", "service-nobatch", "fastapi"):
        cfg = RunConfig("json-1", target, users=[users], duration=duration, out=str(out / target))
        json1[target] = run(cfg)["runs"][0]
    bytes_run = run(RunConfig("bytes-256", "service", users=[bytes_users], duration=duration, out=str(out / "bytes")))
    v2_run = run(RunConfig("v2-256", "service", users=[bytes_users], duration=duration, out=str(out / "v2")))

    capacity = json1["service"]["requests_per_s"]
    open_loop = []
    with TARGETS["service"].start(cpus="0") as server:
        pin_to("1")
        for fraction in (0.25, 0.5, 0.75):
            rate = round(capacity * fraction)
            summary = run_asyncload(LoadConfig(host=server.url, rate=rate, duration=duration, warmup=3))
            open_loop.append({"fraction": fraction, "rate": rate, **summary})
            print(f"open loop {rate}/s: p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms")
    results = {
        "ceiling": ceil,
        "json1": json1,
        "bytes": bytes_run["runs"][0],
        "v2": v2_run["runs"][0],
        "open_loop": open_loop,
    }
    (out / "compare.json").write_text(json.dumps(results, indent=2))
    return results


def report(results: dict[str, Any], users: int, bytes_users: int, duration: int) -> str:
    """The section of docs/benchmarks.md: the tables, then each target's verdict."""
    ceil, json1, open_loop = results["ceiling"], results["json1"], results["open_loop"]
    bytes_run, v2_run = results["bytes"], results["v2"]
    svc = json1["service"]
    provider = ceil[256]["provider"]
    rows = [
        "| target | requests/s | p50 | p90 | p99 | failed | server CPU | Locust CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in json1.items():
        rows.append(
            f"| {name} | **{r['requests_per_s']:.0f}** | {r['p50_ms']:.0f} ms | {r['p90_ms']:.0f} ms "
            f"| {r['p99_ms']:.0f} ms | {r['failed']} | {r['server_cpu_percent']:.0f}% | {r['locust_cpu_percent']:.0f}%"
            f"{' (saturated)' if r['locust_cpu_warning'] else ''} |"
        )
    body = [
        "## Load: the service against its baselines",
        "",
        f"One image per JSON request, {users} Locust users (`FastHttpUser`), {duration} s each, server "
        "pinned to core 0 and Locust to core 1, all in one run. Locust rounds latencies to whole milliseconds.",
        "",
        *rows,
        "",
        f"Adaptive batch sizes during the service's run: `{svc['batch_sizes']}`.",
        "",
        *verdicts(results),
        "",
        f"In-process ceiling (ONNX Runtime alone on {provider}, the server's execution provider; 1 thread, core 0):",
        "",
        "| batch | us per call | images/s |",
        "|---|---|---|",
        *(f"| {b} | {r['us_per_call']:.0f} | {r['images_per_s']:.0f} |" for b, r in ceil.items()),
        "",
        f"Binary form, 256 images per request, {bytes_users} users: {bytes_run['requests_per_s']:.1f} "
        f"requests/s, {bytes_run['images_per_s']:.0f} images/s, p99 {bytes_run['p99_ms']:.0f} ms, "
        f"failed {bytes_run['failed']}. The same images through the Open Inference Protocol (v2, binary tensors "
        f"both ways): {v2_run['requests_per_s']:.1f} requests/s, {v2_run['images_per_s']:.0f} images/s "
        f"({v2_run['images_per_s'] / bytes_run['images_per_s']:.2f}x the binary form), p99 {v2_run['p99_ms']:.0f} ms, "
        f"failed {v2_run['failed']}.",
        "",
        "Open loop (asyncio client, fixed arrival rate, latency timed from each request's scheduled send):",
        "",
        "| rate | share of capacity | p50 | p90 | p99 | failed |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['rate']}/s | {r['fraction']:.0%} | {r['p50_ms']:.1f} ms | {r['p90_ms']:.1f} ms "
            f"| {r['p99_ms']:.1f} ms | {sum(r['failures'].values())} |"
            for r in open_loop
        ),
    ]
    return "\n".join(body)


def verdicts(results: dict[str, Any]) -> list[str]:
    """The targets' table, each measured side by side in `results`."""
    ceil, json1, bytes_run = results["ceiling"], results["json1"], results["bytes"]
    svc, nob, fast = json1["service"], json1["service-nobatch"], json1["fastapi"]
    half = next(r for r in results["open_loop"] if r["fraction"] == 0.5)
    bytes_share = bytes_run["images_per_s"] / ceil[256]["images_per_s"]
    provider = ceil[256]["provider"]
    return [
        "| target (all measured side by side above) | value | verdict |",
        "|---|---|---|",
        f"| service >= FastAPI requests/s, p99 no worse | {svc['requests_per_s'] / fast['requests_per_s']:.2f}x, "
        f"p99 {svc['p99_ms']:.0f} vs {fast['p99_ms']:.0f} ms | "
        f"{verdict(svc['requests_per_s'] >= fast['requests_per_s'] and svc['p99_ms'] <= fast['p99_ms'])} |",
        f"| stretch: >= 1.5x FastAPI | {svc['requests_per_s'] / fast['requests_per_s']:.2f}x "
        f"| {verdict(svc['requests_per_s'] >= 1.5 * fast['requests_per_s'])} |",
        f"| batching on >= 1.5x batching off | {svc['requests_per_s'] / nob['requests_per_s']:.2f}x "
        f"| {verdict(svc['requests_per_s'] >= 1.5 * nob['requests_per_s'])} |",
        f"| 256 images/request through /predict_bytes >= 25% of the {provider} ceiling at batch 256 "
        f"| {bytes_run['images_per_s']:.0f} of {ceil[256]['images_per_s']:.0f} images/s = {bytes_share:.0%} "
        f"| {verdict(bytes_share >= 0.25)} |",
        f"| open loop at half capacity ({half['rate']}/s): p99 <= 50 ms | {half['p99_ms']:.1f} ms "
        f"| {verdict(half['p99_ms'] <= 50)} |",
        f"| no failed requests | {svc['failed']} failed | {verdict(svc['failed'] == 0)} |",
    ]


if __name__ == "__main__":
    sys.exit(main())
