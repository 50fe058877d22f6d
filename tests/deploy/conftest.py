"""The Kubernetes manifests as a cluster would receive them: every kustomization under deploy/k8s rendered by
`kubectl kustomize`, and the custom resources' schemas closed so that a misspelt field fails.

Needs kubectl and ../shared/schemas/crds; where either is missing the tests skip, saying which, except in CI
(`CI` set), where both are always present and a skip would hide a broken check.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

K8S = REPO / "deploy" / "k8s"
CRD_SCHEMAS = REPO.parent / "shared" / "schemas" / "crds"
# Every kustomization a user applies: each overlay (found, so a new one is checked too) and the KServe folder.
KUSTOMIZATIONS = sorted(path.parent.name for path in (K8S / "overlays").glob("*/kustomization.yaml"))
KSERVE = "kserve"
Document = dict


def require(found: object, missing: str, ci: bool) -> None:
    """Skip when a tool or file is missing; in CI fail, as tests/conftest.py's require_mnist does for MNIST."""
    if not found:
        if ci:
            pytest.fail(missing)
        pytest.skip(missing)


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = shutil.which("kubectl")
    require(path, "kubectl not found: `kubectl kustomize` renders the manifests (install kubectl)", in_ci())
    return path


@pytest.fixture(scope="session")
def crd_schemas() -> Path:
    require(CRD_SCHEMAS.is_dir(), f"custom resource schemas not found at {CRD_SCHEMAS}", in_ci())
    return CRD_SCHEMAS


def render(kubectl: str, directory: Path) -> list[Document]:
    """`kubectl kustomize DIRECTORY`, parsed: the objects `kubectl apply -k` would send."""
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def rendered(kubectl: str) -> dict[str, list[Document]]:
    """Each overlay's objects by the overlay's name, and the KServe folder's as "kserve"."""
    found = {name: render(kubectl, K8S / "overlays" / name) for name in KUSTOMIZATIONS}
    found[KSERVE] = render(kubectl, K8S / KSERVE)
    return found


def all_documents(rendered: dict[str, list[Document]]) -> list[tuple[str, Document]]:
    return [(name, doc) for name, docs in rendered.items() for doc in docs]


def of_kind(docs: list[Document], kind: str) -> list[Document]:
    return [doc for doc in docs if doc["kind"] == kind]


def schema_path(crd_schemas: Path, doc: Document) -> Path:
    """datreeio/CRDs-catalog's layout: <group>/<kind>_<version>.json."""
    group, version = doc["apiVersion"].split("/")
    return crd_schemas / group / f"{doc['kind'].lower()}_{version}.json"


def is_custom(doc: Document) -> bool:
    """A kind from a CRD: its API group has a dot and is not one of Kubernetes' own (*.k8s.io)."""
    group = doc["apiVersion"].rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def closed(schema: dict) -> dict:
    """`schema` with `additionalProperties: false` on every object that lists its properties, as the API
    server's strict field validation treats them; objects that keep unknown fields on purpose
    (x-kubernetes-preserve-unknown-fields) stay open. The shared copies leave at least the top level open,
    so a misspelt `spec` would pass them."""
    schema = copy.deepcopy(schema)

    def close(node: object) -> None:
        if isinstance(node, dict):
            if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node.setdefault("additionalProperties", False)
            for child in node.values():
                close(child)
        elif isinstance(node, list):
            for child in node:
                close(child)

    close(schema)
    return schema


@pytest.fixture(scope="session")
def closed_schemas(crd_schemas: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Closed copies of the shared schemas, same layout, in a temporary folder (the shared one is read-only)."""
    root = tmp_path_factory.mktemp("closed-crds")
    for source in crd_schemas.glob("*/*.json"):
        target = root / source.relative_to(crd_schemas)
        target.parent.mkdir(exist_ok=True)
        target.write_text(json.dumps(closed(json.loads(source.read_text()))))
    return root
