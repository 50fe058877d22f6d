"""benchmarks.mutation: a part of the scope can be run and reported on its own."""

from __future__ import annotations

import pytest

from benchmarks import mutation


def test_only_picks_the_areas_whose_name_holds_a_word() -> None:
    wiring = mutation.areas_named(["wiring"])
    assert len(wiring) == 4
    assert all(area.startswith("wiring") for area in wiring)
    assert mutation.areas_named(None) == list(mutation.SCOPE)
    with pytest.raises(SystemExit, match="no area"):
        mutation.areas_named(["no such area"])


def test_a_mutant_belongs_to_an_area_only_among_those_chosen() -> None:
    wiring = mutation.areas_named(["wiring"])
    assert mutation.in_scope("service.settings.x_env_int__mutmut_3", wiring).startswith("wiring: settings")
    assert mutation.in_scope("training.train.x_train__mutmut_7", wiring).startswith("wiring: train()")
    assert mutation.in_scope("service.heads.x_softmax__mutmut_1", wiring) is None
    assert mutation.in_scope("service.heads.x_softmax__mutmut_1") == "probabilities, labels and the input contract"


def test_only_runs_mutmut_on_the_chosen_areas_and_records_them_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []
    recorded: list[str] = []
    monkeypatch.setenv("MNIST_ROOT", "/nowhere")
    done = type("Done", (), {"returncode": 0})
    monkeypatch.setattr(mutation.subprocess, "run", lambda cmd, **kw: ran.append(cmd) or done)
    monkeypatch.setattr(mutation, "results", dict)
    monkeypatch.setattr(mutation, "update_section", lambda section, *a, **k: recorded.append(section))
    assert mutation.main(["--only", "CLI"]) == 0
    assert ran[0][-1:] == ["training.train.x_configs_from_args__mutmut_*"]
    assert recorded == ["mutation-only"]  # the whole run's section is left as it was


def test_mutants_not_run_are_counted_apart_from_the_score(monkeypatch: pytest.MonkeyPatch) -> None:
    statuses = {
        "service.heads.x_softmax__mutmut_1": "killed",
        "service.heads.x_softmax__mutmut_2": "survived",
        "service.heads.x_softmax__mutmut_3": "not checked",
    }
    monkeypatch.setattr(mutation, "results", lambda: statuses)
    monkeypatch.setattr(mutation, "diff_of", lambda name: ["+    return x"])
    text = mutation.report(["probabilities, labels and the input contract"])
    assert "| probabilities, labels and the input contract | 2 | 1 | 1 | 1 |" in text
    assert "**1 of 2 non-equivalent mutants killed: 50.0%** (2 mutants run" in text
    assert "1 mutants not run, outside the figure" in text
