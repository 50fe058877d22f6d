"""Graceful shutdown, measured: SIGTERM to `bentoml serve` while requests are in flight. Writes the
`shutdown` section of docs/benchmarks.md.

    python -m benchmarks.shutdown
    python -m benchmarks.shutdown --users 64 --scenario json-64

Users (threads, one keep-alive connection each) send requests back to back; after `--after` seconds the
server's process group gets SIGTERM. Counted: requests that were sent before the signal and answered 200,
those that failed (and how), and the seconds from the signal until every server process had exited.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx

from loadtests.payloads import Payloads
from loadtests.server import REPO, bentoml_command, free_port, pin_to

from .report import update_section


def main(argv: list[str] | None = None) -> int:
    """The measurement, its flags and its report in one script, read top to bottom as the run happens: longer than
    ~60 lines for that reason (issue 19 left it whole)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.shutdown", description=__doc__)
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--scenario", default="json-64")
    p.add_argument("--after", type=float, default=3.0, help="seconds of load before SIGTERM")
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args(argv)
    pin_to("1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true"}
    server = subprocess.Popen(
        ["taskset", "-c", "0", *bentoml_command(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    payloads = Payloads.load(args.scenario)
    signalled = threading.Event()
    before, after = Counter(), Counter()  # outcomes of requests sent before / after the signal
    lock = threading.Lock()

    def user() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while True:
                request = payloads.next()
                sent_after = signalled.is_set()
                try:
                    outcome = str(client.post(request.path, **request.kwargs).status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with lock:
                    (after if sent_after else before)[outcome] += 1
                if sent_after:
                    return

    threads = [threading.Thread(target=user, daemon=True) for _ in range(args.users)]
    for thread in threads:
        thread.start()
    time.sleep(args.after)
    with lock:
        answered_before_signal = before["200"]
    signalled.set()
    signal_at = time.perf_counter()
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=120)
    exited_in = time.perf_counter() - signal_at
    for thread in threads:
        thread.join(timeout=60)
    in_flight = {k: v for k, v in before.items() if k != "200"} | {"200": before["200"] - answered_before_signal}
    body = (
        "## Graceful shutdown (SIGTERM under load)\n\n"
        f"{args.users} users sending `{args.scenario}` back to back; "
        f"SIGTERM to `bentoml serve` after {args.after:g} s.\n\n"
        f"- requests in flight at the signal: {sum(in_flight.values())}, answered: {dict(in_flight)}\n"
        f"- requests sent after the signal: {dict(after)} (answered during the drain, MNIST_DRAIN_S="
        f"{os.environ.get('MNIST_DRAIN_S', '5')} s; refused or reset once the listener is closed)\n"
        f"- every server process exited {exited_in:.2f} s after the signal (exit status {server.returncode})\n"
    )
    print(body)
    if not args.no_record:
        command = "python -m benchmarks.shutdown " + " ".join(argv if argv is not None else sys.argv[1:])
        update_section("shutdown", body, command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
