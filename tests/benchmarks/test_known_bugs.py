"""benchmarks.known_bugs: every bug still plants in today's code, and a run's verdict reads pytest's outcome."""

from __future__ import annotations

import pytest

from benchmarks import known_bugs


@pytest.mark.parametrize("bug", known_bugs.BUGS, ids=lambda bug: bug.about)
def test_every_known_bug_can_still_be_planted(bug: known_bugs.Bug) -> None:
    assert known_bugs.stale(bug) is None
    assert bug.old != bug.new


def test_a_bug_is_caught_only_by_a_failing_test() -> None:
    failing = "...F\nFAILED tests/x.py::test_y - AssertionError\n1 failed, 3 passed"
    assert known_bugs.verdict(1, failing) == ("caught", "tests/x.py::test_y - AssertionError")
    assert known_bugs.verdict(0, "4 passed") == ("missed", "")
    assert known_bugs.verdict(2, "ERROR tests/x.py\n1 error during collection")[0] == "error"  # not a catch
    assert known_bugs.verdict(1, "no FAILED line")[0] == "error"


def test_nothing_is_measured_when_the_baseline_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(known_bugs, "copy_repo", lambda target: target.mkdir(parents=True))
    monkeypatch.setattr(known_bugs, "run_tier", lambda workdir: (1, "FAILED tests/a.py::test_flaky\n1 failed", 1.0))
    monkeypatch.setattr(known_bugs, "update_section", lambda *a, **k: pytest.fail("recorded a run with no baseline"))
    assert known_bugs.main(["--only", "3"]) == 2


def test_the_planted_runs_leave_out_the_check_that_every_bug_plants(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a copy with a bug planted, that bug's text is gone: the staleness check would 'catch' every bug."""
    commands: list[list[str]] = []

    def fake_run(command: list[str], **kwargs: object) -> object:
        commands.append(command)
        return type("Done", (), {"returncode": 0, "stdout": "1 passed"})()

    monkeypatch.setattr(known_bugs.subprocess, "run", fake_run)
    known_bugs.run_tier(known_bugs.REPO)
    assert f"--ignore={known_bugs.SELF_TEST}" in commands[0]
    assert (known_bugs.REPO / known_bugs.SELF_TEST).exists()
