"""The layout's rules, checked on the syntax tree and on what a running interpreter loads: the service never
imports training (nor torch: the container has neither), and training imports only the artifact contract;
BentoML's internals are used in one module, where each is documented and tested
(service/bentoml_internals.py), and the environment is read in one (service/settings.py); the service is
arranged by role (README, "A request's way through the service"): the app module alone declares the BentoML
service, the front alone turns a refusal into its JSON body, the codecs know bodies and not batching, the
batcher knows requests and not paths or bodies, and every metric is defined in service/metrics.py."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

INTERNALS_ALLOWED = {"bentoml_internals.py"}
ENVIRONMENT_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
INTERNAL_PACKAGES = ("bentoml._internal", "_bentoml_sdk", "_bentoml_impl")


def service_files() -> list[Path]:
    return sorted((REPO / "service").rglob("*.py"))


def module_name(path: Path) -> str:
    """service/codecs/v2.py -> service.codecs.v2"""
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def service_imports(path: Path) -> set[str]:
    """The service modules `path` imports, relative imports resolved: service/codecs/v2.py's `from ..errors`
    is service.errors, `from .pixels import x` service.codecs.pixels (and service.codecs.pixels.x)."""
    package = module_name(path).split(".")[:-1] if path.name != "__init__.py" else module_name(path).split(".")
    names: set[str] = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("service"):
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def calls(tree: ast.AST, attribute: str) -> bool:
    """Whether anything `x.<attribute>(...)` or `<attribute>(...)` is called."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr == attribute) or getattr(func, "id", None) == attribute:
                return True
    return False


def imported_modules(tree: ast.AST) -> set[str]:
    """Every module a file imports, by any spelling: `import a.b`, `from a import b` (as a and a.b), a
    relative import reaching out of the package (`from ..training import x` is training.x), and
    importlib.import_module("...") or __import__("...") with a literal name."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level >= 2:  # service/x.py: `..` is the repository root, outside the service package
                names.add(base)
            elif node.level == 1:
                continue  # within service/
            names.add(base)
            names |= {f"{base}.{alias.name}".strip(".") for alias in node.names}
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return {name for name in names if name}


def reads_environment(tree: ast.AST) -> bool:
    """`os.environ`, `os.getenv(...)`, `from os import environ` (however aliased), `import os as o; o.environ`."""
    os_names = {"os"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_names |= {alias.asname or alias.name for alias in node.names if alias.name == "os"}
    for node in ast.walk(tree):
        imported = isinstance(node, ast.ImportFrom) and node.module == "os" and node.names
        if imported and any(alias.name in ENVIRONMENT_NAMES for alias in node.names):
            return True
        attribute = isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT_NAMES
        if attribute and isinstance(node.value, ast.Name) and node.value.id in os_names:
            return True
    return False


def uses_bentoml_internals(tree: ast.AST) -> bool:
    """An import of bentoml._internal or BentoML's private packages, `from bentoml import _internal`, or
    `bentoml._internal` reached as an attribute."""
    if any(name.startswith(INTERNAL_PACKAGES) for name in imported_modules(tree)):
        return True
    return any(
        isinstance(node, ast.Attribute)
        and node.attr == "_internal"
        and isinstance(node.value, ast.Name)
        and node.value.id == "bentoml"
        for node in ast.walk(tree)
    )


def parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


def test_the_service_never_imports_training() -> None:
    for path in service_files():
        assert not any(m.split(".")[0] in {"training", "torch"} for m in imported_modules(parse(path))), path.name


def test_bentoml_internals_only_in_their_modules() -> None:
    users = {path.name for path in service_files() if uses_bentoml_internals(parse(path))}
    assert users == INTERNALS_ALLOWED


def test_only_the_settings_read_the_environment() -> None:
    assert {path.name for path in service_files() if reads_environment(parse(path))} == {"settings.py"}


def test_training_imports_only_the_artifact_contract_from_the_service() -> None:
    for path in sorted((REPO / "training").glob("*.py")):
        used = {m for m in imported_modules(parse(path)) if m.split(".")[0] == "service"}
        assert used <= {"service.artifact"} | {f"service.artifact.{n}" for n in ("sha256_of", "DEVICES")}, path.name


def test_only_the_app_module_declares_the_bentoml_service() -> None:
    """`@bentoml.service`, `@bentoml.api` and `on_deployment` in service/app.py, nowhere else."""
    declaring = set()
    for path in service_files():
        for node in ast.walk(parse(path)):
            declares = isinstance(node, ast.Attribute) and node.attr in {"service", "api", "on_deployment"}
            if declares and isinstance(node.value, ast.Name) and node.value.id == "bentoml":
                declaring.add(path.name)
    assert declaring == {"app.py"}


def test_a_refusal_becomes_its_json_body_in_the_front_only() -> None:
    assert {path.name for path in service_files() if calls(parse(path), "body")} == {"front.py"}


def test_every_metric_is_defined_in_the_metrics_module() -> None:
    defining = set()
    for path in service_files():
        for node in ast.walk(parse(path)):
            bentoml_metrics = isinstance(node, ast.Attribute) and node.attr == "metrics"
            if bentoml_metrics and getattr(node.value, "id", "") == "bentoml":
                defining.add(path.name)
    assert defining == {"metrics.py"}


@pytest.mark.parametrize(
    ("role", "must_not_import"),
    [
        # the batcher knows requests and responses, not paths, bodies or how a route is answered
        ("service/batching.py", ("service.front", "service.codecs", "service.app", "service.documents")),
        # a codec turns bytes into a request and a response into bytes: it never batches or routes
        ("service/codecs", ("service.front", "service.batching", "service.serving", "service.app", "service.runtime")),
        # the model knows nothing of HTTP or batching
        ("service/runtime.py", ("service.front", "service.batching", "service.codecs", "service.app")),
        ("service/predictor.py", ("service.front", "service.batching", "service.codecs", "service.app")),
        ("service/heads.py", ("service.",)),
        # the artifact contract is what training imports: the errors module and nothing else of the service
        ("service/artifact.py", ("service.front", "service.batching", "service.codecs", "service.runtime")),
        # only the app module is imported by nobody in the service
        ("service/front.py", ("service.app",)),
    ],
)
def test_each_role_keeps_to_itself(role: str, must_not_import: tuple[str, ...]) -> None:
    target = REPO / role
    for path in sorted(target.rglob("*.py")) if target.is_dir() else [target]:
        imported = service_imports(path)
        assert not [m for m in imported if m.startswith(must_not_import)], path.relative_to(REPO)


@pytest.mark.parametrize(
    ("source", "training", "internals", "environment"),
    [
        ("import training.train", True, False, False),
        ("from training import train", True, False, False),
        ("from ..training.train import train", True, False, False),
        ("import importlib\nimportlib.import_module('training.train')", True, False, False),
        ("__import__('torch')", True, False, False),
        ("from . import runtime", False, False, False),
        ("from bentoml import _internal", False, True, False),
        ("from bentoml._internal.context import server_context", False, True, False),
        ("import bentoml\nbentoml._internal.configuration", False, True, False),
        ("import _bentoml_sdk", False, True, False),
        ("import bentoml\nbentoml.api", False, False, False),
        ("from os import environ", False, False, True),
        ("import os as o\no.getenv('MNIST_MODEL')", False, False, True),
        ("import os\nos.environ['X']", False, False, True),
        ("import os\nos.path.join('a', 'b')", False, False, False),
        ("# os.environ in a comment\n'getenv in a string'", False, False, False),
    ],
)
def test_the_rules_see_every_spelling(source: str, training: bool, internals: bool, environment: bool) -> None:
    """The detectors on probes: each way of breaking a rule is seen, and text that only mentions it is not."""
    tree = ast.parse(source)
    assert any(m.split(".")[0] in {"training", "torch"} for m in imported_modules(tree)) == training
    assert uses_bentoml_internals(tree) == internals
    assert reads_environment(tree) == environment


PROBE = """
import importlib, json, pathlib, sys
import service.app
for path in sorted(pathlib.Path("service").glob("*.py")):
    importlib.import_module(f"service.{path.stem}")
print(json.dumps(sorted(sys.modules)))
"""


def test_importing_the_service_loads_no_training_and_no_torch() -> None:
    """The packaging contract, on a real interpreter: `bentoml serve` imports service.app (and each
    service module is importable), and nothing it loads is training's code or torch, which the container
    does not install. Run in a fresh process, since this one has both loaded."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "service.app" in loaded
    assert {"bentoml", "service.runtime", "service.front", "service.codecs.v2"} <= set(loaded)  # the serving stack
    assert [m for m in loaded if m.split(".")[0] in {"training", "torch", "torchvision"}] == []
