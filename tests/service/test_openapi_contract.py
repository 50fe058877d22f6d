"""Schemathesis over the app's own OpenAPI document, in-process: no 5xx for anything the schema allows or
that breaks it, and every response matches what the document says (status codes, content types, bodies)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.testclient import TestClient

pytestmark = pytest.mark.slow  # about 30 s: in `make test` (CI), not in the quick tier

EXAMPLES_PER_ROUTE = 40  # bounded: the whole contract run takes about 30 s on 2 cores
# Where the schema cannot say what is valid, a schema-valid request may rightly get a 400: base64 must decode
# to whole 784-byte images, and an upload must be a picture. Every other check runs on every route.
# v2 infer likewise: a tensor's shape must match its data's length, and a binary body is the JSON header's bytes.
SEMANTIC_BODIES = {
    "/predict_bytes",
    "/predict_image",
    "/v2/models/{model_name}/infer",
    "/v2/models/{model_name}/versions/{model_version}/infer",
}


V2_PATHS = {
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/{model_name}",
    "/v2/models/{model_name}/ready",
    "/v2/models/{model_name}/infer",
    "/v2/models/{model_name}/config",
    "/v2/models/{model_name}/stats",
}


def send(client: TestClient, case: schemathesis.Case) -> Any:  # noqa: ANN401 - an httpx response
    """The case through the session's client: the app's batcher lives on that client's event loop, which
    schemathesis's own ASGI transport (a new loop per call) would not reach."""
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url))
    if kwargs.get("files") is None:
        kwargs.pop("files", None)
    else:  # requests writes str() of a non-string form value; httpx wants str or bytes
        kwargs["files"] = [
            (name, (part[0], part[1] if isinstance(part[1], str | bytes) else str(part[1]), *part[2:]))
            for name, part in kwargs["files"]
        ]
    data = kwargs.pop("data", None)
    if data is not None and "files" not in kwargs:
        kwargs["content"] = data  # requests' raw body is httpx's content
    elif data is not None:
        kwargs["data"] = data
    return client.request(**kwargs)


def test_every_route_keeps_its_contract(client: TestClient) -> None:
    """Each operation of /docs.json in turn, EXAMPLES_PER_ROUTE schema-valid and as many schema-breaking
    requests each."""
    schema = schemathesis.openapi.from_dict(client.get("/docs.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/predict", "/predict_bytes", "/predict_image", "/metadata"} | V2_PATHS
    for operation, mode in itertools.product(operations, schemathesis.GenerationMode):
        if mode is schemathesis.GenerationMode.NEGATIVE and not len(operation.body):
            continue  # nothing to break in a request without a body (health, metrics)

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=EXAMPLES_PER_ROUTE, suppress_health_check=list(HealthCheck), deadline=None)
        def keeps_contract(case: schemathesis.Case) -> None:
            excluded = [positive_data_acceptance] if case.operation.path in SEMANTIC_BODIES else []
            case.validate_response(send(client, case), excluded_checks=excluded)

        keeps_contract()
