"""Run a Locust scenario against the service (or any target) and write a full report.

    python -m loadtests.run --scenario json-1                       # start the service, 64 users, 30 s
    python -m loadtests.run --scenario bytes-256 --users 16
    python -m loadtests.run --scenario json-1 --sweep 1 8 32 64 128 # throughput vs p99 over concurrency
    python -m loadtests.run --scenario json-1 --open-loop 200 400   # fixed arrival rates (asyncio client)
    python -m loadtests.run --host http://10.0.0.5:3000 ...         # an already running server
    MNIST_WORKERS=4 python -m loadtests.run --server-cpus 0-3 --load-cpus 4-7 --locust-workers 4 --users 256
                                                                    # a master + 4 Locust workers, one per core

Steps: start the target pinned to --server-cpus (default core 0) unless --host is given, wait for
/readyz, warm up (BentoML's batcher fits its cost model over its first dispatches), then for each
concurrency level run Locust headless pinned to --load-cpus (default core 1). Written to --out:
Locust's CSV and HTML report per run, summary.json (requests/s, p50/p90/p95/p99, failures by status,
images/s, the adaptive batch size histogram diffed from /metrics, CPU use of server and load generator),
and PNG plots (latency percentiles, batch sizes, and throughput vs p99 for a sweep).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

from .asyncload import LoadConfig
from .asyncload import run as run_asyncload
from .server import free_port, pin_to, pinned
from .targets import TARGETS

USER_CLASSES = {"json-1": "JsonOneImageUser", "json-batch": "JsonBatchUser", "bytes-256": "BytesBatchUser"}
USER_CLASSES |= {"v2-256": "V2BinaryUser", "image": "ImageUploadUser"}
IMAGES_PER_REQUEST = {"json-1": 1, "bytes-256": 256, "v2-256": 256, "image": 1}
BIN = Path(sys.executable).parent
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
LOCUST_CONF = Path(__file__).with_name("locust.conf")


@dataclass(frozen=True)
class RunConfig:
    scenario: str = "json-1"
    target: str = "service"
    host: str | None = None  # an already running server: nothing is started
    users: list[int] = field(default_factory=lambda: [64])  # one Locust run per value (a sweep when several)
    duration: int = 30  # seconds per Locust run
    warmup: float = 5.0  # seconds of load before the first measured run
    server_cpus: str | None = "0"
    load_cpus: str | None = "1"
    open_loop: list[float] = field(default_factory=list)  # requests/s for fixed-rate runs after Locust
    out: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # extra server environment (tuning)
    record: bool = False  # also write a section of docs/benchmarks.md
    # 0: one Locust process (one core). N: a Locust master and N workers, each pinned to one CPU of load_cpus
    # in turn, for a server one Locust core cannot saturate (several workers, a GPU).
    locust_workers: int = 0


def cpu_list(spec: str | None) -> list[str]:
    """A taskset CPU list ('1', '1-3', '1,4-5') as single CPUs: ['1'], ['1', '2', '3'], ['1', '4', '5']."""
    cpus: list[str] = []
    for part in (spec or "").split(","):
        if "-" in part:
            low, high = part.split("-")
            cpus += [str(c) for c in range(int(low), int(high) + 1)]
        elif part.strip():
            cpus.append(part.strip())
    return cpus


def locust_commands(cfg: RunConfig, host: str, users: int, prefix: Path, port: int) -> list[list[str]]:
    """The Locust processes of one run: one headless process, or a master and cfg.locust_workers workers."""
    user_class = USER_CLASSES[cfg.scenario]
    command = [str(BIN / "locust"), "-f", str(LOCUSTFILE), "--config", str(LOCUST_CONF)]
    command += ["--host", host, "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{cfg.duration}s"]
    command += ["--csv", str(prefix), "--html", f"{prefix}.html"]
    if not cfg.locust_workers:
        return [pinned([*command, user_class], cfg.load_cpus)]
    cpus = cpu_list(cfg.load_cpus) or [None]
    master = [*command, "--master", "--expect-workers", str(cfg.locust_workers), "--master-bind-port", str(port)]
    worker = [str(BIN / "locust"), "-f", str(LOCUSTFILE), "--worker", "--master-port", str(port)]
    worker += ["--loglevel", "WARNING", user_class]
    workers = [pinned(worker, cpus[i % len(cpus)]) for i in range(cfg.locust_workers)]
    return [pinned([*master, user_class], cpus[0]), *workers]


def cumulative_buckets(metrics_text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Cumulative buckets of the histograms `names`, summed over endpoints and workers: {le: count}."""
    buckets: dict[str, float] = {}
    prefixes = tuple(f"{name}_bucket" for name in names)
    for line in metrics_text.splitlines():
        if line.startswith(prefixes):
            le = re.search(r'le="([^"]+)"', line).group(1)
            buckets[le] = buckets.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    return buckets


def batch_histogram(metrics_text: str) -> dict[str, float]:
    """Requests per ONNX Runtime call: the service's batcher reports `mnist_adaptive_batch_size`; BentoML's own
    batching API (a bento of an older commit) `bentoml_service_adaptive_batch_size`."""
    return cumulative_buckets(metrics_text, ("mnist_adaptive_batch_size", "bentoml_service_adaptive_batch_size"))


def batch_time_histogram(metrics_text: str) -> dict[str, float]:
    """Seconds per batch in the predictor core (`mnist_batch_seconds`): where a stalling model shows."""
    return cumulative_buckets(metrics_text, ("mnist_batch_seconds",))


def histogram_diff(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    """Per-bucket counts (not cumulative) of batches dispatched between two scrapes: {"<=le": n}."""

    def key(le: str) -> float:
        return float("inf") if le == "+Inf" else float(le)

    out, previous = {}, 0.0
    for le in sorted(after, key=key):
        cumulative = after[le] - before.get(le, 0.0)
        if cumulative - previous > 0:
            out[f"<={le}"] = int(cumulative - previous)
        previous = cumulative
    return out


GC_PAUSE = re.compile(r"^mnist_gc_pause_seconds_(count|sum|bucket)\{([^}]*)\} (\S+)$")


def gc_pauses(metrics_text: str) -> dict[str, dict[str, float]]:
    """The service's garbage-collection pauses so far, summed over workers, per generation:
    {generation: {"collections", "seconds", "over_10ms"}} (from `mnist_gc_pause_seconds`)."""
    totals: dict[str, dict[str, float]] = {}
    for line in metrics_text.splitlines():
        match = GC_PAUSE.match(line)
        if match is None:
            continue
        kind, labels, value = match.groups()
        generation = re.search(r'generation="(\d)"', labels).group(1)
        entry = totals.setdefault(generation, {"collections": 0.0, "seconds": 0.0, "over_10ms": 0.0})
        if kind == "count":
            entry["collections"] += float(value)
            entry["over_10ms"] += float(value)
        elif kind == "sum":
            entry["seconds"] += float(value)
        elif 'le="0.01"' in labels:
            entry["over_10ms"] -= float(value)
    return totals


def gc_pause_diff(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, dict]:
    """Pauses between two `gc_pauses` scrapes: {generation: {"collections", "seconds", "over_10ms"}}."""
    zero = {"collections": 0.0, "seconds": 0.0, "over_10ms": 0.0}
    return {
        generation: {key: round(value - before.get(generation, zero)[key], 6) for key, value in totals.items()}
        for generation, totals in sorted(after.items())
    }


def server_evidence(before: str, after: str) -> dict[str, dict]:
    """What the server saw between two /metrics scrapes: batch sizes, batch times and collector pauses."""
    return {
        "batch_sizes": histogram_diff(batch_histogram(before), batch_histogram(after)),
        "batch_seconds": histogram_diff(batch_time_histogram(before), batch_time_histogram(after)),
        "gc_pauses": gc_pause_diff(gc_pauses(before), gc_pauses(after)),
    }


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process and its children."""
    if pid is None:
        return 0.0
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def scrape(host: str) -> str:
    try:
        return httpx.get(f"{host}/metrics", timeout=10).text
    except httpx.HTTPError:
        return ""  # the FastAPI baseline has no /metrics


def images_in(name: str, scenario: str) -> int:
    """Images per request of a Locust stats row: "/predict [64 images]" says it, else the scenario's."""
    match = re.search(r"\[(\d+) images\]", name)
    return int(match.group(1)) if match else IMAGES_PER_REQUEST.get(scenario, 1)


def read_locust_csv(prefix: Path, scenario: str) -> dict[str, float]:
    with open(f"{prefix}_stats.csv") as f:
        rows = list(csv.DictReader(f))
    row = next(r for r in rows if r["Name"] == "Aggregated")
    per_name = [r for r in rows if r["Name"] != "Aggregated"]
    failures: dict[str, int] = {}
    failures_csv = Path(f"{prefix}_failures.csv")
    if failures_csv.exists():
        with open(failures_csv) as f:
            for r in csv.DictReader(f):
                failures[r["Error"][:120]] = failures.get(r["Error"][:120], 0) + int(r["Occurrences"])
    return {
        "requests": int(row["Request Count"]),
        "failed": int(row["Failure Count"]),
        "requests_per_s": float(row["Requests/s"]),
        **{f"p{q}_ms": float(row[f"{q}%"]) for q in (50, 90, 95, 99)},
        "mean_ms": float(row["Average Response Time"]),
        "max_ms": float(row["Max Response Time"]),
        "images_per_s": sum(float(r["Requests/s"]) * images_in(r["Name"], scenario) for r in per_name),
        "failures": failures,
    }


def locust_once(cfg: RunConfig, host: str, users: int, out: Path, server_pid: int | None) -> dict:
    """One headless Locust run; returns its summary with server/load CPU use and the batch histogram."""
    prefix = out / f"locust_{users}u"
    commands = locust_commands(cfg, host, users, prefix, free_port())
    metrics_before = scrape(host)
    server_cpu_before = cpu_seconds(server_pid)
    started = time.perf_counter()
    logs = [Path(f"{prefix}.log")] + [Path(f"{prefix}.worker{i}.log") for i in range(1, len(commands))]
    procs = []
    for command, log_path in zip(commands, logs, strict=True):
        with open(log_path, "w") as log:
            procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1]))
    load_cpu = {proc.pid: 0.0 for proc in procs}
    while procs[0].poll() is None:  # the master (or the single process) ends the run; workers follow it
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                t = psutil.Process(proc.pid).cpu_times()
                load_cpu[proc.pid] = t.user + t.system
        time.sleep(0.5)
    for proc in procs[1:]:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    wall = time.perf_counter() - started
    summary = read_locust_csv(prefix, cfg.scenario)
    log_text = "".join(path.read_text() for path in logs)
    summary |= {
        "users": users,
        "server_cpu_percent": 100 * (cpu_seconds(server_pid) - server_cpu_before) / wall if server_pid else None,
        "locust_cpu_percent": 100 * sum(load_cpu.values()) / wall,
        "locust_processes": len(procs),
        "locust_cpu_warning": "CPU usage above" in log_text or "CPU usage was too high" in log_text,
        **server_evidence(metrics_before, scrape(host)),
        "locust_exit_code": procs[0].returncode,
    }
    return summary


def warm_up(host: str, scenario: str, seconds: float) -> None:
    if seconds <= 0:
        return
    asyncload_scenario = "json-64" if scenario == "json-batch" else scenario
    run_asyncload(LoadConfig(host=host, scenario=asyncload_scenario, users=16, duration=seconds, warmup=0))


def plot(results: list[dict], open_loop: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = results[-1]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    qs = ["p50_ms", "p90_ms", "p95_ms", "p99_ms"]
    axes[0].bar([q[:-3] for q in qs], [last[q] for q in qs], color="tab:blue")
    axes[0].set(title=f"latency percentiles ({last['users']} users)", ylabel="ms")
    sizes = last["batch_sizes"]
    axes[1].bar(list(sizes), list(sizes.values()), color="tab:green")
    axes[1].set(title="adaptive batch sizes (dispatches)", xlabel="batch size bucket", ylabel="batches")
    axes[1].tick_params(axis="x", rotation=45)
    if len(results) > 1:
        axes[2].plot([r["p99_ms"] for r in results], [r["requests_per_s"] for r in results], marker="o")
        for r in results:
            axes[2].annotate(f"{r['users']}u", (r["p99_ms"], r["requests_per_s"]))
        axes[2].set(title="throughput vs p99 (concurrency sweep)", xlabel="p99 ms", ylabel="requests/s")
    elif open_loop:
        axes[2].plot([r["rate"] for r in open_loop], [r["p99_ms"] for r in open_loop], marker="o")
        axes[2].set(title="open loop: p99 at fixed arrival rates", xlabel="requests/s", ylabel="p99 ms")
    else:
        axes[2].axis("off")
    for ax in axes[:3]:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out / "report.png", dpi=90)
    plt.close(fig)


def run(cfg: RunConfig) -> dict:
    """Run the configured scenario(s); returns and writes summary.json."""
    if cfg.scenario not in USER_CLASSES:
        raise ValueError(f"scenario: got {cfg.scenario!r}; allowed: {', '.join(USER_CLASSES)}")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = Path(cfg.out or f"results/{stamp}-{cfg.target}-{cfg.scenario}")
    out.mkdir(parents=True, exist_ok=True)
    pin_to(cfg.load_cpus)  # our own asyncio client (warm-up, open loop) runs beside Locust
    with ExitStack() as stack:
        server_pid = None
        host = cfg.host
        if host is None:
            server = stack.enter_context(TARGETS[cfg.target].start(cfg.server_cpus, cfg.env))
            host, server_pid = server.url, server.pid
        warm_up(host, cfg.scenario, cfg.warmup)
        results = [locust_once(cfg, host, users, out, server_pid) for users in cfg.users]
        open_loop = []
        for rate in cfg.open_loop:
            loop_cfg = LoadConfig(host=host, scenario=cfg.scenario, rate=rate, duration=cfg.duration, warmup=2)
            before = scrape(host)
            result = run_asyncload(loop_cfg)
            open_loop.append({"rate": rate, **result, **server_evidence(before, scrape(host))})
    summary = {
        "config": asdict(cfg),
        "host": host,
        "machine": {"cpus": os.cpu_count()},
        "runs": results,
        "open_loop": open_loop,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(results, open_loop, out, f"{cfg.target}: {cfg.scenario}")
    for r in results:
        print(
            f"{cfg.target} {cfg.scenario} {r['users']} users: {r['requests_per_s']:.0f} req/s "
            f"({r['images_per_s']:.0f} images/s), p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, "
            f"failed {r['failed']}, server CPU {r['server_cpu_percent'] or 0:.0f}%, "
            f"locust CPU {r['locust_cpu_percent']:.0f}%{' (SATURATED)' if r['locust_cpu_warning'] else ''}"
        )
    for r in open_loop:
        full = r["gc_pauses"].get("2", {})
        print(
            f"open loop offered {r['rate']:.0f}/s, sent {r['sent_per_s']:.0f}/s (send lag p99 "
            f"{r['send_lag_p99_ms']:.1f} ms), answered {r['requests_per_s']:.0f}/s: p50 {r['p50_ms']:.1f} ms, "
            f"p99 {r['p99_ms']:.1f} ms, {r['failures']}, accuracy {r['accuracy']}; "
            f"full collections {full.get('collections', 0):.0f} ({1000 * full.get('seconds', 0):.0f} ms in all, "
            f"{full.get('over_10ms', 0):.0f} over 10 ms)"
        )
    print(f"report: {out}")
    if cfg.record:
        record(cfg, results, open_loop, out)
    return summary


def record(cfg: RunConfig, results: list[dict], open_loop: list[dict], out: Path) -> None:
    """Write the runs into their own section of docs/benchmarks.md, with the plot beside it."""
    from benchmarks.report import update_section

    name = f"run-{cfg.target}-{cfg.scenario}"
    image = Path("docs/img") / f"{name}.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes((out / "report.png").read_bytes())
    lines = [
        f"## Locust: {cfg.target}, {cfg.scenario}, {cfg.duration} s per run",
        "",
        "| users | requests/s | images/s | p50 | p90 | p99 | failed | server CPU | Locust CPU |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['users']} | {r['requests_per_s']:.0f} | {r['images_per_s']:.0f} | {r['p50_ms']:.0f} ms "
            f"| {r['p90_ms']:.0f} ms | {r['p99_ms']:.0f} ms | {r['failed']} | {r['server_cpu_percent'] or 0:.0f}% "
            f"| {r['locust_cpu_percent']:.0f}%{' (saturated)' if r['locust_cpu_warning'] else ''} |"
            for r in results
        ),
    ]
    if open_loop:
        lines += [
            "",
            "| offered | sent | answered | send lag p99 | p50 | p99 | failed |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['rate']:.0f}/s | {r['sent_per_s']:.0f}/s | {r['requests_per_s']:.0f}/s | "
            f"{r['send_lag_p99_ms']:.1f} ms | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
            f"{sum(r['failures'].values())} |"
            for r in open_loop
        ]
    lines += ["", f"![{name}](img/{image.name})"]
    update_section(name, "\n".join(lines), "python -m loadtests.run " + " ".join(sys.argv[1:]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scenario", default="json-1", choices=sorted(USER_CLASSES))
    p.add_argument("--target", default="service", choices=sorted(TARGETS))
    p.add_argument("--host", help="test this running server instead of starting one")
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--sweep", type=int, nargs="+", help="several user counts: a throughput vs p99 curve")
    p.add_argument("--duration", type=int, default=30)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--server-cpus", default="0", help="taskset CPU list for the server ('' for none)")
    p.add_argument("--load-cpus", default="1", help="taskset CPU list for Locust ('' for none)")
    p.add_argument(
        "--locust-workers",
        type=int,
        default=0,
        help="N > 0: a Locust master and N workers, each pinned to one CPU of --load-cpus in turn (default: one "
        "Locust process); for servers one Locust core cannot saturate",
    )
    p.add_argument("--open-loop", type=float, nargs="*", default=[], help="fixed arrival rates, requests/s")
    p.add_argument("--out", help="report folder (default results/<time>-<target>-<scenario>)")
    p.add_argument("--record", action="store_true", help="also write the results into docs/benchmarks.md")
    args = p.parse_args(argv)
    cfg = RunConfig(
        scenario=args.scenario,
        target=args.target,
        host=args.host,
        users=args.sweep or [args.users],
        duration=args.duration,
        warmup=args.warmup,
        server_cpus=args.server_cpus or None,
        load_cpus=args.load_cpus or None,
        open_loop=args.open_loop,
        out=args.out,
        record=args.record,
        locust_workers=args.locust_workers,
    )
    summary = run(cfg)
    return 1 if any(r["failed"] for r in summary["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
