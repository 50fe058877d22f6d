"""The in-process ceiling names the execution provider it measured, the one the server would use."""

from __future__ import annotations

import pytest

from loadtests.baselines.ort_ceiling import ceiling, server_device


def test_the_ceiling_follows_the_servers_device_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNIST_DEVICE", raising=False)
    assert server_device() == "auto"
    monkeypatch.setenv("MNIST_DEVICE", "cpu")
    assert server_device() == "cpu"
    rows = ceiling([1, 4], seconds=0.05)
    assert [r["batch"] for r in rows] == [1, 4]
    assert {r["provider"] for r in rows} == {"CPUExecutionProvider"}
    assert all(r["images_per_s"] > 0 for r in rows)
