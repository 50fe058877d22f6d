"""The API page's document: BentoML's generated OpenAPI document, completed into the service's own.

BentoML documents its `@bentoml.api` methods and its health routes. The service answers more than that, and
answers it differently, so `complete()` rewrites the document it generated (plain dicts, no BentoML code):
- every route the service answers: `GET /metadata` beside `POST`, and the Open Inference Protocol door
  (`/v2/...`, its model name and version as the only values the path takes);
- every status a route can return, each with its body: the refusals of the front (400, 401, 408, 413, 415,
  431), 503 with `Retry-After` when shed, 504 past the request timeout, 404 for another model on v2;
- names a caller understands (`PredictRequest`, not `PredictRequestIODescriptor`; BentoML's unused
  `TaskStatusResponse` and its `NotFound`/`InternalServerError` bodies gone), the project's own tags and links.
The page at `/` (`page()`) is Swagger UI from the files BentoML ships, so it needs no network, without
BentoML's GitHub corner.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .artifact import INPUT_WIDTH, ModelMetadata
from .heads import OUTPUT_ACTIVATIONS
from .schemas import example_image

PROTOCOL = "https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md"
TRITON_EXTENSIONS = "https://github.com/triton-inference-server/server/tree/main/docs/protocol"
RENAMED = {  # BentoML's generated titles -> the names the page shows
    "PredictRequestIODescriptor": "PredictRequest",
    "PredictBytesRequestIODescriptor": "PredictBytesRequest",
    "PredictResponseIODescriptor": "PredictResponse",
    "ModelInfoIODescriptor": "ModelInfo",
    "metadata__Input": "MetadataRequest",
    "predict_image__Input": "ImageUpload",
}
UNUSED = ("TaskStatusResponse", "InvalidArgument", "NotFound", "InternalServerError")
TAGS = [
    {"name": "Predict", "description": "Classify 28x28 digits: JSON rows, compact bytes or an uploaded picture."},
    {"name": "Model", "description": "The served model: its name, version, labels, accuracy and limits."},
    {
        "name": "Open Inference Protocol (v2)",
        "description": "The protocol Triton, KServe and MLServer speak, with Triton's binary tensor data, model "
        "configuration and statistics extensions.",
        "externalDocs": {"description": "The protocol", "url": PROTOCOL},
    },
    {"name": "Operations", "description": "Liveness, readiness and Prometheus metrics for orchestrators."},
]
ERROR = {
    "type": "object",
    "title": "Error",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong and how to fix it"},
        "field": {"type": "string", "description": "where, when the problem has one: images[0][5], data, image"},
    },
}
REFUSALS = {  # status -> when the front answers it
    "400": "Bad input: the body names the field and the fix",
    "401": "Missing or wrong API token (only when MNIST_API_TOKEN is set): send `Authorization: Bearer <token>`",
    "408": "The request body did not arrive within MNIST_BODY_TIMEOUT_S",
    "413": "The request body is larger than MNIST_MAX_BODY_BYTES",
    "415": "Wrong Content-Type for this route",
    "431": "Too many or too large request headers",
    "503": "Overloaded: the queue is full or the request waited past its budget; retry after `Retry-After` s",
    "504": "No answer within the request timeout (30 s)",
}


def complete(document: dict[str, Any], model: ModelMetadata) -> dict[str, Any]:
    """BentoML's document for this service -> the service's whole document (a new dict)."""
    doc = json.loads(json.dumps(document, default=str))
    doc["tags"] = TAGS
    doc["externalDocs"] = {"description": "The Open Inference Protocol (v2)", "url": PROTOCOL}
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in UNUSED:
        schemas.pop(name, None)
    schemas["Error"] = ERROR
    paths = doc["paths"]
    for route in ("/predict", "/predict_bytes", "/predict_image"):
        operation = paths[route]["post"]
        operation.update(tags=["Predict"], summary=first_line(operation.get("description", "")))
        operation["operationId"] = route.strip("/")
        operation["responses"] = {"200": operation["responses"]["200"], **refusals(*REFUSALS)}
    metadata = paths["/metadata"]["post"]
    metadata.update(tags=["Model"], operationId="metadata_post", summary="The served model (POST form, body {})")
    metadata["responses"] = {"200": metadata["responses"]["200"], **refusals("400", "401", "408", "413", "415", "431")}
    paths["/metadata"]["get"] = {
        **copy.deepcopy({k: v for k, v in metadata.items() if k != "requestBody"}),
        "operationId": "metadata",
        "summary": "The served model: name, version, labels, accuracy, execution provider, batching and limits",
        "responses": {"200": metadata["responses"]["200"], **refusals("401", "431")},
    }
    for route in ("/healthz", "/livez", "/readyz", "/metrics"):
        for operation in paths.get(route, {}).values():
            operation["tags"] = ["Operations"]
    if "/readyz" in paths:
        paths["/readyz"]["get"]["responses"]["503"] = {
            "description": "Not ready: still loading the model, or stopping (SIGTERM)"
        }
    paths.update(open_inference_paths(model))
    schemas.update(open_inference_schemas())
    rename_schemas(doc)
    return doc


def first_line(text: str) -> str:
    return text.strip().split("\n")[0].rstrip(".")


def refusals(*statuses: str) -> dict[str, Any]:
    """The documented refusal responses: each `Error` body; 503 with `Retry-After`."""
    out: dict[str, Any] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": REFUSALS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        if status == "503":
            response["headers"] = {
                "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
            }
        out[status] = response
    return out


def rename_schemas(doc: dict[str, Any]) -> None:
    """BentoML's generated schema names -> RENAMED: the components' keys, the references and the titles."""
    schemas = doc["components"]["schemas"]
    for old, new in RENAMED.items():
        if old in schemas:
            schemas[new] = schemas.pop(old)
    rename_references(doc)


def rename_references(node: Any) -> None:  # noqa: ANN401 - any JSON value
    if isinstance(node, dict):
        if node.get("title") in RENAMED:
            node["title"] = RENAMED[node["title"]]
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.rsplit("/", 1)[-1] in RENAMED:
            node["$ref"] = "#/components/schemas/" + RENAMED[reference.rsplit("/", 1)[-1]]
        for value in node.values():
            rename_references(value)
    elif isinstance(node, list):
        for value in node:
            rename_references(value)


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def open_inference_paths(model: ModelMetadata) -> dict[str, Any]:
    """The v2 routes, each also under `/versions/{model_version}`; the path takes the served model only."""
    name = {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string", "enum": [model.name]}}
    version = {
        "name": "model_version",
        "in": "path",
        "required": True,
        "description": "the model's own version (a content hash) or 1, the number Triton's tools expect",
        "schema": {"type": "string", "enum": [model.version, "1"]},
    }
    tag = ["Open Inference Protocol (v2)"]
    not_found = {"404": json_body(ref("Error"), "Another model or version than the served one")}
    example = example_image()

    def get(summary: str, schema: dict[str, Any], operation: str, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
        return {
            "get": {
                "tags": tag,
                "summary": summary,
                "operationId": operation,
                "responses": {"200": json_body(schema), **refusals("401", "431"), **extra},
            }
        }

    infer = {
        "post": {
            "tags": tag,
            "summary": "Classify a tensor of images (JSON, or JSON + binary tensor data)",
            "operationId": "v2_infer",
            "description": (
                "Input `pixels`: FP32 (in [0, 1]) or UINT8 (0-255), shape [N, 784]. With Triton's binary tensor "
                "data extension the body is the JSON header, then the raw little-endian tensor bytes: send "
                "`Content-Type: application/octet-stream` and `Inference-Header-Content-Length: <JSON bytes>`, "
                "and give the input `parameters.binary_data_size`. Outputs `probabilities` FP32 [N, k] and "
                "`label` BYTES [N]; binary when an output asks `binary_data` or the request sets "
                "`binary_data_output` (the answer then carries `Inference-Header-Content-Length`)."
            ),
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": ref("InferenceRequest"),
                        "example": {
                            "inputs": [
                                {"name": "pixels", "shape": [1, INPUT_WIDTH], "datatype": "FP32", "data": example}
                            ]
                        },
                    },
                    "application/octet-stream": {
                        "schema": {"type": "string", "format": "binary"},
                        "description": "the JSON header, then the tensors' bytes (binary tensor data extension)",
                    },
                },
            },
            "responses": {
                "200": {
                    "description": "The outputs",
                    "content": {
                        "application/json": {"schema": ref("InferenceResponse")},
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                **refusals("400", "401", "408", "413", "415", "431", "503", "504"),
                **not_found,
            },
        }
    }
    not_ready = {"503": json_body(ref("Error"), "Not ready: the server is stopping (SIGTERM)")}
    per_model = {
        "": get("The model's inputs and outputs", ref("ModelMetadata"), "v2_model", **not_found),
        "/ready": get("Whether the model is ready", ref("ModelReady"), "v2_model_ready", **not_found, **not_ready),
        "/infer": infer,
        "/config": get("Triton's model configuration", ref("ModelConfig"), "v2_model_config", **not_found),
        "/stats": get("Triton's statistics of this worker", ref("Statistics"), "v2_model_stats", **not_found),
    }
    paths: dict[str, Any] = {
        "/v2": get("Server metadata: name, version, protocol extensions", ref("ServerMetadata"), "v2_server"),
        "/v2/health/live": get("Liveness", {"type": "object", "properties": {"live": {"type": "boolean"}}}, "v2_live"),
        "/v2/health/ready": get(
            "Readiness", {"type": "object", "properties": {"ready": {"type": "boolean"}}}, "v2_ready", **not_ready
        ),
        "/v2/models/stats": get("Triton's statistics of every model (the served one)", ref("Statistics"), "v2_stats"),
    }
    for suffix, item in per_model.items():
        paths[f"/v2/models/{{model_name}}{suffix}"] = with_parameters(item, [name], "")
        paths[f"/v2/models/{{model_name}}/versions/{{model_version}}{suffix}"] = with_parameters(
            item, [name, version], "_version"
        )
    return paths


def with_parameters(item: dict[str, Any], parameters: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    item = copy.deepcopy(item)
    for operation in item.values():
        operation["parameters"] = parameters
        operation["operationId"] += suffix
    return item


def open_inference_schemas() -> dict[str, Any]:
    tensor_shape = {"type": "array", "items": {"type": "integer"}, "minItems": 1}
    return {
        "ServerMetadata": {
            "type": "object",
            "required": ["name", "version", "extensions"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}},
            },
        },
        "ModelMetadata": {
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": ref("TensorMetadata")},
                "outputs": {"type": "array", "items": ref("TensorMetadata")},
                "parameters": {"type": "object"},
            },
        },
        "TensorMetadata": {
            "type": "object",
            "required": ["name", "datatype", "shape"],
            "properties": {"name": {"type": "string"}, "datatype": {"type": "string"}, "shape": tensor_shape},
        },
        "ModelReady": {
            "type": "object",
            "required": ["name", "ready"],
            "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
        },
        "InferenceRequest": {
            "type": "object",
            "required": ["inputs"],
            "description": "Unknown top-level fields are ignored, as Triton and KServe ignore them; `model_name` "
            "and `model_version`, when sent, must name the served model.",
            "properties": {
                "id": {"type": "string"},
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "parameters": {
                    "type": "object",
                    "properties": {
                        "activation": {"type": "string", "enum": list(OUTPUT_ACTIVATIONS)},
                        "binary_data_output": {"type": "boolean"},
                    },
                },
                "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": ref("InputTensor")},
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "enum": ["probabilities", "label"]},
                            "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
                        },
                    },
                },
            },
        },
        "InputTensor": {
            "type": "object",
            "required": ["name", "shape", "datatype"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "enum": ["pixels"]},
                "shape": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                "datatype": {"type": "string", "enum": ["FP32", "UINT8"]},
                "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer"}}},
                "data": {"type": "array", "description": "N x 784 numbers, flat or nested; absent when binary"},
            },
        },
        "InferenceResponse": {
            "type": "object",
            "required": ["model_name", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "shape", "datatype"],
                        "properties": {
                            "name": {"type": "string"},
                            "shape": tensor_shape,
                            "datatype": {"type": "string"},
                            "parameters": {"type": "object"},
                            "data": {"type": "array"},
                        },
                    },
                },
            },
        },
        "ModelConfig": {
            "type": "object",
            "description": f"Triton's model configuration (model_config.proto as JSON): {TRITON_EXTENSIONS}",
        },
        "Statistics": {
            "type": "object",
            "description": f"Triton's statistics extension, of the worker that answered: {TRITON_EXTENSIONS}",
            "properties": {"model_stats": {"type": "array", "items": {"type": "object"}}},
        },
    }


def page(title: str) -> str:
    """Swagger UI over /docs.json, from the files BentoML serves at ./static_content (no network needed)."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>{title}</title>
  <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
  <link rel="icon" type="image/png" href="./static_content/favicon-light-32x32.png" sizes="32x32" />
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "./docs.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
      presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout", tryItOutEnabled: false
    }});
  </script>
</body>
</html>
"""
