"""Find the serving configuration with the most throughput under a p99 bound (in the spirit of Triton's
Model Analyzer): sweep max_batch_size, max_latency_ms, workers and ONNX Runtime threads.

    python -m loadtests.tune                              # one factor at a time, 3 rounds (~9 min)
    python -m loadtests.tune --grid                       # every combination (long)
    python -m loadtests.tune --scenario bytes-256 --users 8 --factors batch --p99-bound 500

Each configuration starts the service pinned to --server-cpus, warms it up, and measures it with the
asyncio closed-loop client (microsecond latencies) pinned to --load-cpus. Writes results/tune/tune.json,
results/tune/tune.png and the `tuning` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import httpx

from benchmarks.report import update_section
from service.runtime import RuntimeConfig
from service.settings import Batching

from .asyncload import LoadConfig
from .asyncload import run as run_asyncload
from .server import pin_to
from .targets import TARGETS

DEFAULTS = {  # the service's own defaults: the centre of the one-factor sweep
    "MNIST_MAX_BATCH_SIZE": Batching.max_batch_size,
    "MNIST_MAX_LATENCY_MS": Batching.max_latency_ms,
    "MNIST_WORKERS": Batching.workers,
    "MNIST_ORT_THREADS": RuntimeConfig.intra_op_threads,
}
SPACE = {
    "MNIST_MAX_BATCH_SIZE": [8, 32, 128, 256, 1024],
    "MNIST_MAX_LATENCY_MS": [100, 300, 1000, 5000],
    "MNIST_WORKERS": [1, 2],
    "MNIST_ORT_THREADS": [1, 2],
}
SHORT = {"MNIST_MAX_BATCH_SIZE": "batch", "MNIST_MAX_LATENCY_MS": "latency_ms"}
SHORT |= {"MNIST_WORKERS": "workers", "MNIST_ORT_THREADS": "ort_threads"}


def configurations(grid: bool, factors: list[str]) -> list[dict[str, int]]:
    space = {key: values for key, values in SPACE.items() if SHORT[key] in factors}
    if grid:
        return [DEFAULTS | dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]
    configs = [dict(DEFAULTS)]
    for key, values in space.items():
        configs += [DEFAULTS | {key: v} for v in values if v != DEFAULTS[key]]
    return configs


def measure(config: dict[str, int], args: argparse.Namespace) -> dict:
    env = {k: str(v) for k, v in config.items()}
    with TARGETS["service"].start(cpus=args.server_cpus, env=env) as server:
        load = LoadConfig(host=server.url, scenario=args.scenario, users=args.users, duration=args.duration, warmup=4)
        summary = run_asyncload(load)
        provider = served_provider(server.url)
    row = {SHORT[k]: v for k, v in config.items()} | {
        "provider": provider,
        "requests_per_s": summary["requests_per_s"],
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "failed": sum(summary["failures"].values()),
    }
    print(json.dumps(row))
    return row


def served_provider(url: str) -> str:
    """The ONNX Runtime execution provider the server reports using (GET /metadata)."""
    try:
        return httpx.get(f"{url}/metadata", timeout=10).json()["execution_provider"]
    except (httpx.HTTPError, ValueError, KeyError):
        return "unknown"


def median_rows(rounds: list[list[dict]]) -> list[dict]:
    """Per configuration, the median of each figure over the rounds (the machine is shared and noisy)."""
    merged = []
    for runs in zip(*rounds, strict=True):
        row = {k: runs[0][k] for k in SHORT.values()} | {"provider": runs[0].get("provider", "unknown")}
        for k in ("requests_per_s", "p50_ms", "p99_ms"):
            row[k] = statistics.median(r[k] for r in runs)
        row["rps_min"] = min(r["requests_per_s"] for r in runs)
        row["rps_max"] = max(r["requests_per_s"] for r in runs)
        row["failed"] = sum(r["failed"] for r in runs)
        row["rounds"] = len(runs)
        merged.append(row)
    return merged


def plot(rows: list[dict], best: dict | None, bound: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for row in rows:
        ok = row["p99_ms"] <= bound and row["failed"] == 0
        ax.scatter(row["p99_ms"], row["requests_per_s"], color="tab:green" if ok else "tab:red")
        label = f"b{row['batch']} l{row['latency_ms']} w{row['workers']} t{row['ort_threads']}"
        ax.annotate(label, (row["p99_ms"], row["requests_per_s"]), fontsize=7)
    if best:
        ax.scatter(best["p99_ms"], best["requests_per_s"], s=200, facecolors="none", edgecolors="black")
    ax.axvline(bound, linestyle="--", color="grey")
    ax.set(xlabel="p99 latency (ms)", ylabel="requests/s", title=f"tuning sweep (p99 bound {bound:g} ms)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """The sweep, its flags and its report in one script, read top to bottom as the run happens: about 60 lines
    for that reason."""
    p = argparse.ArgumentParser(prog="python -m loadtests.tune", description=__doc__)
    p.add_argument("--grid", action="store_true", help="every combination instead of one factor at a time")
    p.add_argument("--p99-bound", type=float, default=150.0)
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--scenario", default="json-1")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3, help="rounds over all configurations; medians are kept")
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--load-cpus", default="1")
    p.add_argument("--factors", nargs="+", default=list(SHORT.values()), choices=list(SHORT.values()))
    p.add_argument("--out", default="results/tune")
    args = p.parse_args(argv)
    pin_to(args.load_cpus)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    configs = configurations(args.grid, args.factors)
    # whole rounds, one after another, so slow drifts of the shared machine hit every configuration alike
    rows = median_rows([[measure(c, args) for c in configs] for _ in range(args.repeats)])
    eligible = [r for r in rows if r["p99_ms"] <= args.p99_bound and r["failed"] == 0]
    best = max(eligible, key=lambda r: r["requests_per_s"]) if eligible else None
    (out / "tune.json").write_text(json.dumps({"rows": rows, "best": best, "p99_bound": args.p99_bound}, indent=2))
    plot(rows, best, args.p99_bound, out / "tune.png")
    docs_png = Path(f"docs/img/tune-{args.scenario}.png")
    docs_png.parent.mkdir(parents=True, exist_ok=True)
    docs_png.write_bytes((out / "tune.png").read_bytes())
    table = [
        "| max_batch_size | max_latency_ms | workers | ORT threads | req/s (median) | min-max | p50 | p99 | failed |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['batch']} | {r['latency_ms']} | {r['workers']} | {r['ort_threads']} | {r['requests_per_s']:.0f} "
            f"| {r['rps_min']:.0f}-{r['rps_max']:.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['failed']} |"
            for r in rows
        ),
    ]
    verdict = (
        f"Best under p99 <= {args.p99_bound:g} ms: max_batch_size {best['batch']}, max_latency_ms "
        f"{best['latency_ms']}, workers {best['workers']}, ORT threads {best['ort_threads']}: "
        f"{best['requests_per_s']:.0f} requests/s, p99 {best['p99_ms']:.1f} ms."
        if best
        else f"No configuration met p99 <= {args.p99_bound:g} ms without failures."
    )
    body = "\n".join(
        [
            f"## Tuning sweep: {args.scenario}",
            "",
            f"{args.scenario}, {args.users} closed-loop users (asyncio client), {args.duration:g} s per configuration, "
            f"median of {args.repeats} rounds, server on core {args.server_cpus}, load on core {args.load_cpus}; "
            f"execution provider: {', '.join(sorted({r['provider'] for r in rows}))}.",
            "",
            *table,
            "",
            verdict,
            "",
            f"![tuning sweep](img/tune-{args.scenario}.png)",
        ]
    )
    command = "python -m loadtests.tune " + " ".join(sys.argv[1:] if argv is None else argv)
    update_section(f"tuning-{args.scenario}", body, command.strip())
    print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
