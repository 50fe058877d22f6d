"""The manifests agree with the code they deploy: the probes and scrapes ask for paths the service answers
without credentials, on the port it listens on; every MNIST_* variable is a setting the service reads, with a
value it accepts; the autoscalers' queries name series the service exports; the grace period covers the
preStop pause, the drain and the request timeout; selectors select the pods; the GPU variants ask for a GPU.
Each fails when either side changes alone."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import yaml
from bentoml._internal.configuration.containers import BentoMLContainer
from starlette.testclient import TestClient

import service.settings
from loadtests.payloads import load_sample
from service.settings import ServiceSettings
from tests.conftest import REPO
from tests.deploy.conftest import K8S, KSERVE, Document, of_kind
from tests.service.conftest import app_settings, serve_in_process

PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
ADAPTER_VALUES = K8S / "components" / "hpa" / "prometheus-adapter-values.yaml"
SERIES = re.compile(r"\bmnist_[a-z0-9_]+")
TOKEN = "not-sent-by-probes"
AUTHORIZED = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served() -> Iterator[TestClient]:
    """The whole app in-process, with an API token set: probes and scrapes send none."""
    with serve_in_process(app_settings(api_token=TOKEN)) as client:
        yield client


def pods(docs: list[Document]) -> list[Document]:
    """The pod specs a kustomization makes: each Deployment's template; for KServe, the InferenceService's pod
    fields with its ServingRuntime's containers and volumes (KServe joins them into one pod)."""
    found = [deployment["spec"]["template"]["spec"] for deployment in of_kind(docs, "Deployment")]
    for runtime in of_kind(docs, "ServingRuntime"):
        for isvc in of_kind(docs, "InferenceService"):
            if isvc["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]:
                predictor = {k: v for k, v in isvc["spec"]["predictor"].items() if k != "model"}
                found.append(predictor | {k: runtime["spec"][k] for k in ("containers", "volumes")})
    assert found, "no pods"
    return found


def containers(docs: list[Document]) -> list[Document]:
    return [container for pod in pods(docs) for container in pod["containers"]]


def literal_env(container: Document) -> dict[str, str]:
    """The container's environment as far as it is written in the manifest (not values from Secrets)."""
    return {var["name"]: var["value"] for var in container.get("env", []) if "value" in var}


def container_port(container: Document, port: str | int) -> int:
    """A probe's or policy's port, named or numbered, as the number the container listens on."""
    numbers = {p["name"]: p["containerPort"] for p in container["ports"] if "name" in p}
    assert isinstance(port, int) or port in numbers, f"port {port!r} is not one of {container['name']}'s"
    return port if isinstance(port, int) else numbers[port]


def prestop_seconds(container: Document) -> int:
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep", command
    return int(command[1])


def documented_settings() -> set[str]:
    """The settings table in service/settings.py's docstring: the variables the service documents."""
    names = set(re.findall(r"^\| (MNIST_[A-Z0-9_]+) \|", service.settings.__doc__, re.MULTILINE))
    assert len(names) > 10, "the settings table's format changed; update this parser"
    return names


def test_probes_ask_the_service_on_its_port_and_need_no_token(
    rendered: dict[str, list[Document]], served: TestClient
) -> None:
    bentoml_port = BentoMLContainer.http.port.get()  # what `bentoml serve` listens on unless told otherwise
    for name, docs in rendered.items():
        for container in containers(docs):
            assert [p["containerPort"] for p in container["ports"]] == [bentoml_port], name
            for probe in PROBES:
                check = container[probe]["httpGet"]
                assert container_port(container, check["port"]) == bentoml_port
                assert served.get(check["path"]).status_code == 200, f"{name}: {probe} {check['path']}"


def test_prometheus_scrapes_a_path_the_service_answers_without_a_token(
    rendered: dict[str, list[Document]], served: TestClient
) -> None:
    for name, docs in rendered.items():
        service_ports = {port["name"] for svc in of_kind(docs, "Service") for port in svc["spec"]["ports"]}
        for monitor in of_kind(docs, "ServiceMonitor"):
            for endpoint in monitor["spec"]["endpoints"]:
                assert endpoint["port"] in service_ports, name
                assert served.get(endpoint["path"]).status_code == 200
        for monitor in of_kind(docs, "PodMonitor"):
            for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                assert all(container_port(c, endpoint["port"]) for c in containers(docs))
                assert served.get(endpoint["path"]).status_code == 200
    assert served.get("/metadata").status_code == 401  # the token is on: the 200s above did not need it


def test_every_mnist_variable_is_a_setting_the_service_reads_and_accepts(rendered: dict[str, list[Document]]) -> None:
    documented = documented_settings()
    source = (REPO / "service" / "settings.py").read_text()
    for name, docs in rendered.items():
        for container in containers(docs):
            names = {var["name"] for var in container.get("env", []) if var["name"].startswith("MNIST_")}
            assert names <= documented, f"{name}: not settings of the service: {names - documented}"
            unread = {var for var in names if f'"{var}"' not in source}
            assert not unread, f"{name}: documented but never read by service/settings.py: {unread}"
            ServiceSettings.from_env(literal_env(container))  # a malformed value raises, naming the variable


def test_the_grace_period_covers_the_pause_the_drain_and_the_slowest_request(
    rendered: dict[str, list[Document]],
) -> None:
    from service.app import MNISTService

    request_timeout = MNISTService.config["traffic"]["timeout"]
    for name, docs in rendered.items():
        for pod in pods(docs):
            for container in pod["containers"]:
                drain = ServiceSettings.from_env(literal_env(container)).drain_s
                needed = prestop_seconds(container) + drain + request_timeout
                assert pod["terminationGracePeriodSeconds"] >= needed, f"{name}: {needed} s needed"


def test_autoscalers_scale_on_series_the_service_exports(
    rendered: dict[str, list[Document]], served: TestClient
) -> None:
    adapter_rules = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    adapter_metrics = {rule["name"]["as"] for rule in adapter_rules}
    queries = [rule["seriesQuery"] + rule["metricsQuery"] for rule in adapter_rules]
    for name, docs in rendered.items():
        for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
            pod_metrics = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
            assert pod_metrics, f"{name}: the HPA does not scale on the service's own metric"
            assert pod_metrics <= adapter_metrics, f"{name}: prometheus-adapter serves no {pod_metrics}"
        for scaled in of_kind(docs, "ScaledObject"):
            queries += [t["metadata"]["query"] for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    series = {found for query in queries for found in SERIES.findall(query)}
    assert series, "no mnist_ series in the autoscalers' queries"

    images, _ = load_sample()  # one request through the batcher, so its histograms have samples
    answer = served.post("/predict", json={"images": (images[:1] / 255).tolist()}, headers=AUTHORIZED)
    assert answer.status_code == 200
    exported = {line.split("{")[0].split(" ")[0] for line in served.get("/metrics").text.splitlines()}
    assert series <= exported, f"queried but not on /metrics: {series - exported}"
    source = "".join(path.read_text() for path in (REPO / "service").glob("*.py"))
    for family in {re.sub(r"_(sum|count|bucket)$", "", found) for found in series}:
        assert f'"{family}"' in source, f"{family} is not defined in service/"


def test_the_keda_query_selects_the_rendered_service(rendered: dict[str, list[Document]]) -> None:
    """kustomize does not rewrite names inside a query string: a renamed namespace or Service would leave
    KEDA reading nothing, which it takes for an idle service."""
    for name, docs in rendered.items():
        services = {(svc["metadata"]["namespace"], svc["metadata"]["name"]) for svc in of_kind(docs, "Service")}
        for scaled in of_kind(docs, "ScaledObject"):
            for trigger in (t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"):
                query = trigger["metadata"]["query"]
                selected = set(re.findall(r'namespace="([^"]+)",service="([^"]+)"', query))
                assert selected, f"{name}: the query selects no namespace and Service"
                assert selected <= services, f"{name}: {selected} are not the rendered {services}"


def quantity(value: str) -> float:
    """A Kubernetes quantity as the HPA reads it ("5m" = 0.005); plain numbers as they are."""
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def test_hpa_and_keda_variants_scale_on_the_same_targets(rendered: dict[str, list[Document]]) -> None:
    """An overlay and its -keda twin are one choice of autoscaler, not two tunings: each HPA target (in order)
    is the matching KEDA trigger's threshold."""
    twins = [(name, f"{name}-keda") for name in rendered if f"{name}-keda" in rendered]
    assert twins, "no overlay with a -keda twin"
    for hpa_overlay, keda_overlay in twins:
        (hpa,) = of_kind(rendered[hpa_overlay], "HorizontalPodAutoscaler")
        (scaled,) = of_kind(rendered[keda_overlay], "ScaledObject")
        targets = [quantity(m["pods"]["target"]["averageValue"]) for m in hpa["spec"]["metrics"]]
        thresholds = [float(t["metadata"]["threshold"]) for t in scaled["spec"]["triggers"]]
        assert targets == pytest.approx(thresholds), f"{hpa_overlay} vs {keda_overlay}"
        assert hpa["spec"]["minReplicas"] == scaled["spec"]["minReplicaCount"]
        assert hpa["spec"]["maxReplicas"] == scaled["spec"]["maxReplicaCount"]
        assert hpa["spec"]["behavior"] == scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]


def test_selectors_select_the_pods(rendered: dict[str, list[Document]]) -> None:
    for name, docs in rendered.items():
        if name == KSERVE:
            continue  # KServe makes its own Deployment, Service and selectors
        (deployment,) = of_kind(docs, "Deployment")
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        pod = deployment["spec"]["template"]["spec"]
        selectors = [deployment["spec"]["selector"]["matchLabels"]]
        selectors += [svc["spec"]["selector"] for svc in of_kind(docs, "Service")]
        selectors += [pdb["spec"]["selector"]["matchLabels"] for pdb in of_kind(docs, "PodDisruptionBudget")]
        selectors += [policy["spec"]["podSelector"]["matchLabels"] for policy in of_kind(docs, "NetworkPolicy")]
        selectors += [spread["labelSelector"]["matchLabels"] for spread in pod["topologySpreadConstraints"]]
        for selector in selectors:
            assert selector.items() <= pod_labels.items(), f"{name}: {selector} misses the pods"
        for monitor in of_kind(docs, "ServiceMonitor"):
            service_labels = of_kind(docs, "Service")[0]["metadata"]["labels"]
            assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items(), name
        (container,) = pod["containers"]
        for svc in of_kind(docs, "Service"):
            assert all(container_port(container, port["targetPort"]) for port in svc["spec"]["ports"])
        for policy in of_kind(docs, "NetworkPolicy"):
            for rule in policy["spec"]["ingress"]:
                assert all(container_port(container, port["port"]) for port in rule["ports"])
        for scaler in of_kind(docs, "HorizontalPodAutoscaler") + of_kind(docs, "ScaledObject"):
            assert scaler["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"], name


def test_one_autoscaler_owns_the_replica_count(rendered: dict[str, list[Document]]) -> None:
    for name, docs in rendered.items():
        if name == KSERVE:
            continue
        scalers = of_kind(docs, "HorizontalPodAutoscaler") + of_kind(docs, "ScaledObject")
        assert len(scalers) == 1, f"{name}: {len(scalers)} autoscalers"
        (deployment,) = of_kind(docs, "Deployment")
        assert "replicas" not in deployment["spec"], f"{name}: each apply would reset the autoscaler's count"


def test_gpu_variants_ask_for_one_gpu_and_refuse_to_start_without_it(rendered: dict[str, list[Document]]) -> None:
    for name, docs in rendered.items():
        for container in containers(docs):
            gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
            requires_gpu = ServiceSettings.from_env(literal_env(container)).runtime.require_gpu
            image_tag = container["image"].rpartition(":")[2]
            if "gpu" in name:
                assert (gpus, requires_gpu, image_tag) == (1, True, "cuda"), name
            else:
                assert (gpus, requires_gpu, image_tag) == (None, False, "cpu"), name


def test_pods_run_locked_down(rendered: dict[str, list[Document]]) -> None:
    """Pod Security's restricted profile, a read-only root with /tmp the one writable path, no API token."""
    for name, docs in rendered.items():
        for pod in pods(docs):
            assert pod["automountServiceAccountToken"] is False, name
            assert pod["enableServiceLinks"] is False, name  # else MNIST_SERVE_* variables appear
            emptydirs = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
            for container in pod["containers"]:
                context = pod.get("securityContext", {}) | container["securityContext"]
                assert context["runAsNonRoot"] is True, name
                assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
                assert context["readOnlyRootFilesystem"] is True, name
                assert context["allowPrivilegeEscalation"] is False, name
                assert context["capabilities"]["drop"] == ["ALL"], name
                mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                assert mounts.get("/tmp") in emptydirs, f"{name}: /tmp is not writable"
