"""Keep docs/benchmarks.md as sections that each benchmark rewrites in place."""

from __future__ import annotations

import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path

from training.provenance import git_commit

DEFAULT_DOC = Path("docs/benchmarks.md")
HEADER = "# Benchmarks\n\nEvery figure below comes from the command printed beside it.\n"


def machine_description() -> str:
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


def update_section(section: str, body: str, command: str, path: Path = DEFAULT_DOC) -> None:
    """Replace (or append) the block between `<!-- section:start -->` and `<!-- section:end -->`."""
    stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {git_commit(abbrev=7)}, {machine_description()}"
    lines = [f"<!-- {section}:start -->", body.rstrip(), "", f"Command: `{command}`  ", f"Measured: {stamp}"]
    block = "\n".join([*lines, f"<!-- {section}:end -->"])
    text = path.read_text() if path.exists() else HEADER
    pattern = re.compile(rf"<!-- {re.escape(section)}:start -->.*?<!-- {re.escape(section)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
