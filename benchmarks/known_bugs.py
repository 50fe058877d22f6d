"""Re-plant the one-line bugs that once slipped past the suite (issue 11), one at a time, and run the quick tier.

    python -m benchmarks.known_bugs            # about 12 minutes on 2 cores; records docs/testing.md
    python -m benchmarks.known_bugs --only 3   # one bug, by number

First the unmodified copy runs the tier: if it does not pass (missing MNIST, a flaky or broken test), nothing
is measured, since a failure would then say nothing about a bug. Then each bug is applied to a fresh copy (the
working tree is never touched) and `pytest -m "not slow" -x` runs there: a bug is caught when a test fails on
it (pytest's exit status 1 and a FAILED line), missed when the tier passes, and an error otherwise (the tier
could not run: collection error, interrupted). A bug whose text no longer matches the code is reported as
stale, and tests/benchmarks/test_known_bugs.py fails on it, so the list is kept honest as the code moves.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .report import update_section

REPO = Path(__file__).resolve().parents[1]
COPY_IGNORES = (".venv", ".git", "mutants", "runs", "results", "__pycache__", ".hypothesis", "*.egg-info")
DOC = REPO / "docs" / "testing.md"
SELF_TEST = "tests/benchmarks/test_known_bugs.py"  # checks that each bug still plants in the unmodified code


@dataclass(frozen=True)
class Bug:
    about: str
    path: str
    old: str
    new: str


BUGS = [
    Bug(
        "every request in a batch gets the first request's activation",
        "service/predictor.py",
        "chosen = [activation or self.runtime.default_activation for activation in batch.activations]",
        "chosen = [batch.activations[0] or self.runtime.default_activation for activation in batch.activations]",
    ),
    Bug(
        "batching off: the request's activation is dropped",
        "service/predictor.py",
        "RequestBatch(pixels, [len(pixels)], [activation])",
        "RequestBatch(pixels, [len(pixels)], [None])",
    ),
    Bug(
        "/predict_bytes scales uint8 by 256",
        "service/codecs/pixels.py",
        "UINT8_SCALE = 255.0",
        "UINT8_SCALE = 256.0",
    ),
    Bug(
        "softmax without the max subtraction",
        "service/heads.py",
        "z = logits - logits.max(axis=1, keepdims=True)",
        "z = logits.copy()",
    ),
    Bug(
        "the augmentation shifts along one axis only",
        "training/data.py",
        "cols = (left + torch.arange(28, device=x.device))",
        "cols = (torch.arange(28, device=x.device) + max_shift)",
    ),
    Bug(
        "the augmentation shifts by a constant offset",
        "training/data.py",
        "right = max_shift - torch.randint(0, span, (n,), generator=generator, device=device)",
        "right = max_shift - torch.randint(0, 1, (n,), generator=generator, device=device)",
    ),
    Bug(
        "validation images leak into training",
        "training/data.py",
        "val_idx, train_idx = perm[:val_size], perm[val_size:]",
        "val_idx, train_idx = perm[:val_size], perm[val_size // 2 :]",
    ),
    Bug(
        "the validation split follows the global seed",
        "training/data.py",
        "perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))",
        "perm = torch.randperm(n)",
    ),
    Bug(
        "the pigeon's labels swapped in metadata",
        "training/export.py",
        'return [f"not {digits}", digits]',
        'return [digits, f"not {digits}"]',
    ),
    Bug(
        "the parity tolerance loosened to 1.0",
        "training/export.py",
        "tolerance: float = 1e-5",
        "tolerance: float = 1.0",
    ),
    Bug(
        "best.pt written every epoch regardless of validation accuracy",
        "training/train.py",
        "if accuracy <= self.best_accuracy and not always:",
        "if False:",
    ),
    Bug(
        "evaluation with dropout on",
        "training/train.py",
        "    model.eval()\n    loss = torch.zeros((), dtype=torch.float64, device=split.x.device)\n",
        "    loss = torch.zeros((), dtype=torch.float64, device=split.x.device)\n",
    ),
    Bug(
        "tanh and sigmoid swapped",
        "training/model.py",
        '"tanh": nn.Tanh,\n        "sigmoid": nn.Sigmoid,',
        '"tanh": nn.Sigmoid,\n        "sigmoid": nn.Tanh,',
    ),
    Bug(
        "the learning-rate schedule never stepped",
        "training/train.py",
        "        fit.schedule.step()\n",
        "",
    ),
]


def copy_repo(target: Path) -> None:
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "mutants", "runs", "results", "__pycache__", ".hypothesis", "*.egg-info"
    )
    shutil.copytree(REPO, target, ignore=ignore, dirs_exist_ok=True)


def stale(bug: Bug, root: Path = REPO) -> str | None:
    """Why `bug` can no longer be planted in the code under `root`, or None when its text is there once."""
    count = (root / bug.path).read_text().count(bug.old)
    return None if count == 1 else f"the text to replace is found {count} times in {bug.path}"


def verdict(returncode: int, stdout: str) -> tuple[str, str]:
    """(caught, missed or error; the first failing test) from a quick-tier run's exit status and output."""
    failed = next((line for line in stdout.splitlines() if line.startswith("FAILED")), "").removeprefix("FAILED ")
    if returncode == 0:
        return "missed", ""
    if returncode == 1 and failed:
        return "caught", failed
    last = stdout.strip().splitlines()[-1:] or [""]
    return "error", f"exit status {returncode}: {last[0][:200]}"


def run_tier(workdir: Path) -> tuple[int, str, float]:
    started = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "-m", "not slow", "-x", "-q", "-p", "no:cacheprovider", "tests"]
    command.append(f"--ignore={SELF_TEST}")  # it fails on any planted bug: the planted text is no longer there
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env={**os.environ, "CI": "true"})
    return done.returncode, done.stdout, time.perf_counter() - started


def run_one(bug: Bug | None, workdir: Path) -> tuple[str, float, str]:
    """(verdict, seconds, the first failing test) for one bug (None: the unmodified baseline), on a fresh copy."""
    shutil.rmtree(workdir, ignore_errors=True)
    copy_repo(workdir)
    if bug is not None:
        if reason := stale(bug, workdir):
            return "stale", 0.0, reason
        source = workdir / bug.path
        source.write_text(source.read_text().replace(bug.old, bug.new))
    returncode, stdout, seconds = run_tier(workdir)
    found, failed = verdict(returncode, stdout)
    if bug is None:  # the baseline passes, or says why not
        return ("passed" if returncode == 0 else "failed"), seconds, failed
    return found, seconds, failed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.known_bugs", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", type=int, nargs="*", help="bug numbers to run (default: all)")
    args = p.parse_args(argv)
    chosen = [(i, bug) for i, bug in enumerate(BUGS, 1) if not args.only or i in args.only]
    rows = ["| # | bug | verdict | first failing test |", "|---:|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="known-bugs-") as tmp:
        baseline, baseline_s, why = run_one(None, Path(tmp) / "repo")
        print(f"baseline: the unmodified copy {baseline} the quick tier in {baseline_s:.1f}s {why}", flush=True)
        if baseline != "passed":
            print("nothing measured: the tier must pass on the unmodified code first", file=sys.stderr)
            return 2
        for i, bug in chosen:
            verdict, seconds, failed = run_one(bug, Path(tmp) / "repo")
            print(f"{i:2d}. {verdict:6s} {seconds:5.1f}s  {bug.about}: {failed}", flush=True)
            rows.append(f"| {i} | {bug.about} (`{bug.path}`) | {verdict} | `{failed.split(' - ')[0]}` |")
    caught = sum("| caught |" in row for row in rows)
    summary = f"**{caught} of {len(chosen)} caught by the quick tier**"
    baseline_line = f"(the unmodified copy passed it first, in {baseline_s:.0f} s)."
    text = "\n".join([*rows, "", f"{summary} {baseline_line}"])
    if not args.only:
        update_section("known-bugs", text, "python -m benchmarks.known_bugs", path=DOC)
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
