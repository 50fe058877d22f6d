"""The service's own doors: ASGI middleware that answers the prediction and metadata routes itself.

BentoML's API layer stays in place for everything else (readiness, metrics, the OpenAPI page) and, with
MNIST_FAST_PATH=0, for the two JSON predict routes. What the doors add:

- /predict, /predict_bytes: validated with the request models, batched by the fast path's adaptive batcher
  (service/fastpath.py) and shed with a fast 503 + Retry-After when its queue is full.
- /predict_image: admitted (503 when the queue is full) and batched like the JSON routes; the multipart form
  parsed here with hard limits (one file named `image`, one optional `activation`, nothing else). BentoML's
  own handling answered 500 to a misnamed field, a text field, a form that is not multipart or a long file
  name, and fetched a text `image=http://...` as a URL from the server; here no URL is ever fetched.
- GET and POST /metadata (POST with no body or a JSON object, whose fields are ignored, as BentoML's route did).

Every refusal is a service.errors.ClientError: one JSON body `{"error", "field"}` (the OpenAPI document's
InvalidArgument), one rate-limited log line, no traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

import numpy as np
from anyio import to_thread
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from . import openapi, v2
from .errors import ClientError
from .guard import ASGIApp, Receive, Scope, Send, read_body, replay, send_json, send_refusal
from .images import pixels_from_upload
from .metadata import INPUT_WIDTH
from .runtime import ACTIVATIONS, InputError
from .schemas import ModelInfo, PixelRequest, PredictResponse
from .serving import Serving, ServingSlot

log = logging.getLogger("service.doors")

UNEXPECTED = "An unexpected error has occurred, please check the server log."  # BentoML's own 500 text
UPLOAD_FIELDS = ("image", "activation")
SERVER_VERSION = "1"  # of this server's v2 door, as `GET /v2` reports it
Answer = bytes | tuple[bytes, dict[str, str]]  # a 200's body, and any headers of its own
Handler = Callable[[Serving, Scope, bytes], Awaitable[Answer]]


class Doors:
    """ASGI middleware: (method, path) -> a handler that returns the JSON body of a 200 or raises ClientError.
    Other routes, and every route before the worker's Serving is in `slot`, go on to BentoML."""

    def __init__(self, app: ASGIApp, slot: ServingSlot, fast_path: bool = True) -> None:
        self.app = app
        self.slot = slot
        self.handlers: dict[tuple[str, str], Handler] = {
            ("POST", "/predict_image"): predict_image,
            ("GET", "/metadata"): metadata,
            ("POST", "/metadata"): metadata,
        }
        if fast_path:
            self.handlers |= {("POST", "/predict"): predict_json, ("POST", "/predict_bytes"): predict_json}
        # the API page and its document: BentoML's, completed into the service's own (service/openapi.py)
        self.handlers |= {("GET", "/"): api_page, ("GET", "/docs.json"): self.api_document}
        self._document: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = None
        if scope["type"] == "http":
            handler = self.handlers.get((scope["method"], scope["path"]))
            if handler is None and scope["path"].startswith("/v2"):
                handler = open_inference
        if handler is None:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return  # the client went away
        serving = self.slot.serving
        if serving is None:  # not started yet: BentoML's route answers as it would
            await self.app(scope, replay(body, receive), send)
            return
        try:
            answer = await handler(serving, scope, body)
        except ClientError as exc:
            await send_refusal(scope, send, exc)
            return
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"])
            await send_json(send, 500, ClientError(500, UNEXPECTED).body())
            return
        body, headers = answer if isinstance(answer, tuple) else (answer, None)
        await send_json(send, 200, body, headers)

    async def api_document(self, serving: Serving, scope: Scope, body: bytes) -> bytes:
        """BentoML's /docs.json, completed once per worker (the model's name and version are in it)."""
        if self._document is None:
            generated = await inner_get(self.app, scope, "/docs.json")
            self._document = json.dumps(openapi.complete(json.loads(generated), serving.runtime.metadata)).encode()
        return self._document


async def inner_get(app: ASGIApp, scope: Scope, path: str) -> bytes:
    """The body BentoML's own app answers to `GET path`, asked in-process."""
    chunks: list[bytes] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    inner = {**scope, "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b""}
    await app(inner, receive, send)
    return b"".join(chunks)


async def api_page(serving: Serving, scope: Scope, body: bytes) -> Answer:
    title = f"mnist-serve: {serving.runtime.metadata.name}"
    return openapi.page(title).encode(), {"content-type": "text/html; charset=utf-8"}


async def predict_json(serving: Serving, scope: Scope, body: bytes) -> bytes:
    return await serving.batcher.respond(scope["path"], body)


async def predict_image(serving: Serving, scope: Scope, body: bytes) -> bytes:
    """Admitted like every door (a flood of uploads is shed with 503), decoded, then batched with the rest."""
    with serving.batcher.admitted("/predict_image"):
        data, activation = await read_upload(scope, body)
        # Decoding a picture takes milliseconds of CPU: off the event loop, as BentoML ran its sync route.
        pixels = await to_thread.run_sync(upload_pixels, data)
        return await serving.batcher.answer(PixelRequest.of(pixels, activation))


def upload_pixels(data: bytes) -> np.ndarray:
    """An uploaded picture's bytes -> one (1, 784) row in MNIST's convention, or ClientError naming `image`."""
    try:
        return pixels_from_upload(data).reshape(1, INPUT_WIDTH)
    except InputError as exc:
        raise ClientError.from_input(exc) from None
    except MemoryError:
        raise ClientError(413, "image: too large to decode; send a smaller picture", "image") from None


def classify_upload(predictor, data: bytes, activation: str | None) -> PredictResponse:  # noqa: ANN001
    """The upload answered without the batcher: BentoML's own route for it (the OpenAPI page's signature)."""
    return predictor.respond(upload_pixels(data), activation)


async def read_upload(scope: Scope, body: bytes) -> tuple[bytes, str | None]:
    """The form's file `image` and optional `activation`; anything else is refused, naming the field."""
    request = Request(scope, replay(body, _no_more))
    try:
        form = await request.form(max_files=1, max_fields=1, max_part_size=len(body) + 1)
    except HTTPException as exc:
        raise ClientError(400, f"not a valid multipart form ({exc.detail}); send the file as field 'image'") from None
    except Exception as exc:  # noqa: BLE001 - python-multipart's parser errors on a malformed body
        raise ClientError(
            400, f"not a valid multipart form ({exc.__class__.__name__}); send the file as field 'image'"
        ) from None
    try:
        for name in form:
            if name not in UPLOAD_FIELDS:
                raise ClientError(
                    400, f"{name[:64]!r} is not a field of this form; send the file as 'image'", name[:64]
                )
        image = form.get("image")
        if image is None:
            raise ClientError(400, "image: missing; send the picture as a file in the multipart field 'image'", "image")
        if not isinstance(image, UploadFile):
            raise ClientError(400, "image: must be a file upload; URLs and text are not fetched or read", "image")
        activation = form.get("activation")
        if isinstance(activation, str) and activation.startswith('"'):  # the OpenAPI document's JSON encoding
            activation = json_string(activation)
        if isinstance(activation, UploadFile) or (activation is not None and activation not in ACTIVATIONS):
            raise ClientError(400, f"activation: must be one of {', '.join(ACTIVATIONS)}", "activation")
        return await image.read(), activation
    finally:
        await form.close()


async def metadata(serving: Serving, scope: Scope, body: bytes) -> bytes:
    if scope["method"] == "POST" and body.strip() and not is_json_object(body):
        raise ClientError(400, "body: must be a JSON object; send {} or use GET /metadata", "body")
    return ModelInfo.__pydantic_serializer__.to_json(serving.model_info())


async def open_inference(serving: Serving, scope: Scope, body: bytes) -> Answer:
    """The Open Inference Protocol (v2) door: service/v2.py decodes and encodes, the core predicts."""
    found = v2.route(scope["method"], scope["path"])
    if found is None:
        raise ClientError(404, f"{scope['method']} {scope['path']} is not part of the Open Inference Protocol")
    what, name, version = found
    meta = serving.runtime.metadata
    versions = (meta.version, v2.TRITON_VERSION)  # the contract's, and the number Triton's tools read
    if name is not None and (name != meta.name or version not in (None, *versions)):
        wanted = name if version is None else f"{name} version {version}"
        raise ClientError(404, f"model {wanted!r} not found; this server serves {meta.name!r} version {meta.version}")
    if what != "infer":
        return json.dumps(v2_document(serving, what)).encode()
    with serving.batcher.admitted("/v2/infer"):
        headers = dict(scope["headers"])
        length = headers.get(v2.HEADER_LENGTH.encode())
        inference = v2.parse_inference(
            body,
            None if length is None else length.decode("latin-1"),
            meta.input.name,
            serving.settings.limits.max_images,
            meta.name,
            versions,
        )
        response = await serving.batcher.predict(PixelRequest.of(inference.pixels, inference.activation))
    return v2.encode_response(response, inference, meta.name, meta.version)


def v2_document(serving: Serving, what: v2.Route) -> dict:
    """The JSON body of a v2 GET route. Live is always true here (this code runs only once the worker's model is
    loaded; before, BentoML answers); ready too, until SIGTERM starts the drain (503, as /readyz)."""
    meta, settings = serving.runtime.metadata, serving.settings
    if what == "server":
        return v2.server_metadata(SERVER_VERSION)
    if what in ("ready", "model_ready") and serving.drain.draining:
        raise ClientError(503, "not ready: the server is stopping (SIGTERM); send to another replica")
    if what in ("live", "ready"):
        return v2.health(what)
    if what == "model_ready":
        return v2.model_ready(meta)
    if what == "config":
        return v2.model_config(meta, settings.limits, settings.batching, serving.runtime.provider)
    if what == "stats":
        return {"model_stats": [serving.batcher.stats.as_triton(meta.name, v2.TRITON_VERSION)]}
    return v2.model_metadata(meta)


def json_string(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def is_json_object(body: bytes) -> bool:
    """What BentoML's route accepted for an API without parameters, and what its OpenAPI schema allows. JSON
    nested deeper than Python's recursion limit is not an object of this API either (it was a 500)."""
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):
        return False


async def _no_more() -> dict:
    return {"type": "http.disconnect"}
