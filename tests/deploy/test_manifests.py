"""The rendered manifests are valid Kubernetes, with no cluster: core kinds against Kubernetes' own schemas
(kubernetes-validate, strict: an unknown field is an error), custom kinds (ServiceMonitor, ScaledObject,
InferenceService...) against their CRDs' schemas, closed, with check-jsonschema. A misspelt field planted in
each is refused, so these checks can fail. `make deploy-check` runs tests/deploy."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import Document, all_documents, is_custom, of_kind, schema_path

# Fixed, so that a new kubernetes-validate cannot change the verdict; >= 1.30 has the preStop sleep action.
KUBERNETES_VERSION = "1.33.0"


def validate_core(doc: Document) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def check_jsonschema(schema: Path, docs: list[Document], folder: Path) -> subprocess.CompletedProcess:
    """check-jsonschema's CLI on `docs` (written as YAML files in `folder`) against `schema`, in one call."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, doc in enumerate(docs):
        path = folder / f"{doc['kind'].lower()}-{index}.yaml"
        path.write_text(yaml.safe_dump(doc))
        files.append(str(path))
    command = [sys.executable, "-m", "check_jsonschema", "--schemafile", str(schema), *files]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_every_kustomization_renders_what_it_promises(rendered: dict[str, list[Document]]) -> None:
    for name, docs in rendered.items():
        kinds = {doc["kind"] for doc in docs}
        if name == "kserve":
            assert {"InferenceService", "ServingRuntime", "PodMonitor"} <= kinds
        else:
            expected = {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"}
            assert expected <= kinds, f"{name} lacks {expected - kinds}"


def test_core_kinds_are_valid_kubernetes(rendered: dict[str, list[Document]]) -> None:
    unvalidated = set()
    for name, doc in all_documents(rendered):
        if is_custom(doc):
            continue
        try:
            validate_core(doc)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {error.message} at {list(error.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            unvalidated.add(doc["kind"])
    assert not unvalidated, f"kinds that kubernetes-validate has no schema for: {unvalidated}"


# Every custom kind the manifests use, each validated against its CRD's schema.
CUSTOM_KINDS = ["ServiceMonitor", "PodMonitor", "ScaledObject", "ServingRuntime", "InferenceService"]


def test_every_custom_kind_is_checked(rendered: dict[str, list[Document]]) -> None:
    used = {doc["kind"] for _, doc in all_documents(rendered) if is_custom(doc)}
    assert used == set(CUSTOM_KINDS)


@pytest.mark.parametrize("kind", CUSTOM_KINDS)
def test_custom_kinds_are_valid_against_closed_crd_schemas(
    rendered: dict[str, list[Document]], closed_schemas: Path, tmp_path: Path, kind: str
) -> None:
    by_schema: dict[Path, list[Document]] = defaultdict(list)
    for _, doc in all_documents(rendered):
        if doc["kind"] == kind:
            by_schema[schema_path(closed_schemas, doc)].append(doc)
    for schema, docs in by_schema.items():
        assert schema.exists(), f"no schema for {docs[0]['apiVersion']} {kind} in ../shared/schemas/crds"
        result = check_jsonschema(schema, docs, tmp_path)
        assert result.returncode == 0, f"{schema.name}:\n{result.stdout}{result.stderr}"


def misspell(doc: Document, path: tuple[str | int, ...], wrong: str) -> Document:
    """A copy of `doc` whose field at `path` is renamed to `wrong`, keeping its value."""
    doc = copy.deepcopy(doc)
    *parents, field = path
    node = doc
    for key in parents:
        node = node[key]
    node[wrong] = node.pop(field)
    return doc


def test_a_misspelt_field_in_a_core_kind_is_refused(rendered: dict[str, list[Document]]) -> None:
    (deployment,) = of_kind(rendered["cpu"], "Deployment")
    validate_core(deployment)
    probe = ("spec", "template", "spec", "containers", 0, "readinessProbe", "periodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError, match="periodSecond"):
        validate_core(misspell(deployment, probe, "periodSecond"))


@pytest.mark.parametrize(
    ("kind", "path", "wrong"),
    [
        ("ServiceMonitor", ("spec", "endpoints", 0, "interval"), "intervall"),
        ("ServiceMonitor", ("spec",), "spce"),  # the top level: the shared copies leave it open
    ],
)
def test_a_misspelt_field_in_a_custom_kind_is_refused(
    rendered: dict[str, list[Document]], closed_schemas: Path, tmp_path: Path, kind: str, path: tuple, wrong: str
) -> None:
    (doc,) = of_kind(rendered["cpu"], kind)
    result = check_jsonschema(schema_path(closed_schemas, doc), [misspell(doc, path, wrong)], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert wrong in result.stdout
