"""The API document (/docs.json, service/openapi.py): every route the service answers, every status a route can
return with its body, names a caller understands, and examples that work as they are."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from service.front import V2Route, v2_route
from tests.service.conftest import app_settings, serve_in_process


@pytest.fixture(scope="module")
def served() -> Any:  # noqa: ANN401 - (document, TestClient)
    with serve_in_process(app_settings()) as client:
        yield client.get("/docs.json").json(), client


def concrete(path: str, model: str, version: str) -> str:
    return path.replace("{model_name}", model).replace("{model_version}", version)


def test_every_route_the_front_answers_is_documented(served: Any) -> None:  # noqa: ANN401
    document, client = served
    meta = client.get("/metadata").json()
    paths = document["paths"]
    assert {"get", "post"} <= set(paths["/metadata"])
    kinds = set()
    for path, operations in paths.items():
        if path.startswith("/v2"):
            for method in operations:
                found = v2_route(method.upper(), concrete(path, meta["name"], meta["version"]))
                assert found is not None, f"{method} {path} is documented but not answered"
                kinds.add(found[0])
    assert kinds == set(V2Route.__args__)  # every kind of v2 route, documented
    for path, operations in paths.items():
        for method in operations:
            if method == "get":
                answer = client.get(concrete(path, meta["name"], meta["version"]))
                assert answer.status_code == 200, (path, answer.text)


def test_every_refusal_is_documented_with_its_body(served: Any) -> None:  # noqa: ANN401
    document, _ = served
    for route in ("/predict", "/predict_bytes", "/predict_image", "/v2/models/{model_name}/infer"):
        responses = document["paths"][route]["post"]["responses"]
        assert {"200", "400", "401", "408", "413", "415", "431", "503"} <= set(responses), route
        assert responses["503"]["headers"]["Retry-After"]
        assert responses["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    error = document["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"error", "field"}


def test_names_a_caller_understands_and_no_bentoml_boilerplate(served: Any) -> None:  # noqa: ANN401
    document, _ = served
    text = json.dumps(document)
    assert not re.search(r"IODescriptor|__Input|TaskStatusResponse|BentoML", text)
    assert {"PredictRequest", "PredictResponse", "ModelInfo", "InferenceRequest"} <= set(
        document["components"]["schemas"]
    )
    assert document["info"]["title"] == "mnist-serve"


def test_the_examples_work_as_they_are(served: Any) -> None:  # noqa: ANN401
    document, client = served
    meta = client.get("/metadata").json()
    for path in ("/predict", "/predict_bytes", "/v2/models/{model_name}/infer"):
        content = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        example = content.get("example") or content["schema"].get("example")
        answer = client.post(concrete(path, meta["name"], meta["version"]), json=example)
        assert answer.status_code == 200, (path, answer.text)
        body = answer.json()
        labels = (
            [p["label"] for p in body["predictions"]]
            if "predictions" in body
            else next(o["data"] for o in body["outputs"] if o["name"] == "label")
        )
        assert labels == ["7"], path  # a real digit, not zeros
