"""benchmarks.rolling: what it counts as a loss, and (slow) a rolling restart behind HAProxy that loses nothing."""

from __future__ import annotations

import os
import shutil
from collections import Counter

import pytest

from benchmarks.rolling import RollingConfig, outcome, rolling_restart
from loadtests.asyncload import UNTOLD_503, LoadResult
from loadtests.payloads import Payloads


def test_a_503_without_retry_after_and_a_connection_error_are_losses_a_shed_503_is_not() -> None:
    result = LoadResult(statuses=Counter({200: 90, 503: 7, "ClientOSError": 2, 502: 1}))
    result.failures = Counter({"HTTP 503": 5, UNTOLD_503: 2, "ClientOSError": 2, "HTTP 502": 1})
    assert outcome(result) == {
        "sent": 100,
        "200": 90,
        "503": 5,
        "lost": 5,
        f"lost as {UNTOLD_503}": 2,
        "lost as ClientOSError": 2,
        "lost as HTTP 502": 1,
    }


@pytest.mark.slow
def test_replicas_restarted_in_turn_under_load_lose_no_request() -> None:
    if shutil.which("haproxy") is None:
        if os.environ.get("CI"):
            pytest.fail("HAProxy is missing: .ci/run installs it")
        pytest.skip("HAProxy is not installed (Debian: apt-get install haproxy)")
    cfg = RollingConfig(replicas=2, rate=200, drain_s=2, settle_s=1.0)
    counts, stopped_in = rolling_restart(cfg, Payloads.load(cfg.scenario))
    assert counts["lost"] == 0, counts
    assert counts["200"] > 0.9 * counts["sent"]
    assert all(cfg.drain_s <= s < cfg.drain_s + 25 for s in stopped_in), stopped_in
