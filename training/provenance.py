"""Where a result came from: the git commit of the code that made it, for metadata.json and measurement stamps.

Standard library only: benchmarks/ use it without loading torch.
"""

from __future__ import annotations

import subprocess

DIRTY = "+uncommitted changes"


def git_commit(abbrev: int = 40) -> str:
    """HEAD's commit, `abbrev` hex digits, with DIRTY appended when tracked files differ from it; outside a git
    checkout it says so instead of an empty string."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", f"--short={abbrev}", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0 or not head.stdout.strip():
            return "unknown (not a git checkout)"
        status = ["git", "status", "--porcelain", "--untracked-files=no"]
        dirty = subprocess.run(status, capture_output=True, text=True, timeout=5).stdout
        return head.stdout.strip() + (DIRTY if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (git did not run)"
