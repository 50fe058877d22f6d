"""The layout's rules, checked on the source: the service never imports training, and BentoML's internals
are used in one module, where each is documented and tested (service/compat.py), and the environment is
read in one (service/settings.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

INTERNALS_ALLOWED = {"compat.py"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_service_never_imports_training() -> None:
    for path in (REPO / "service").glob("*.py"):
        assert not any(m.split(".")[0] == "training" for m in imported_modules(path)), path.name


def test_bentoml_internals_only_in_their_modules() -> None:
    users = {
        path.name
        for path in (REPO / "service").glob("*.py")
        if any(m.startswith(("bentoml._internal", "_bentoml_")) for m in imported_modules(path))
    }
    assert users == INTERNALS_ALLOWED


def test_only_the_settings_read_the_environment() -> None:
    readers = {
        path.name
        for path in (REPO / "service").glob("*.py")
        if "os.environ" in (text := path.read_text()) or "getenv" in text
    }
    assert readers == {"settings.py"}
