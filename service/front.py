"""The ASGI front: every HTTP request meets the service here, in front of BentoML's app, and reads top to bottom.

1. HTTP limits, before anything is parsed: more than `max_headers` headers or `max_header_bytes` in all -> 431
   (uvicorn's httptools parser has no limit of its own: a 64 MiB header was accepted).
2. On the service's routes (`ROUTES`, and the v2 model routes): the API token (MNIST_API_TOKEN), when set ->
   401 without `Authorization: Bearer <token>`; on a POST, a wrong Content-Type -> 415, a body over
   `max_body_bytes` -> 413 (declared or counted), a body that does not arrive within `body_timeout_s` -> 408
   (a Content-Length larger than the body was held 30 s, then 504). Health, readiness, metrics and the OpenAPI
   page stay open: orchestrators and scrapers call them.
3. The route's door answers: admitted by the batcher (503 when its queue is full), decoded by its codec
   (service/codecs/), predicted through the batcher, encoded. A door raises ClientError for every refusal; it
   becomes its JSON body `{"error", "field"}` (the OpenAPI document's InvalidArgument) and one rate-limited
   log line, here and nowhere else (service/errors.py).
4. The API page at / and its document /docs.json: BentoML's, completed (service/openapi.py).
5. Everything else goes on to BentoML's app: /livez, /readyz, /metrics; and every route before the worker's
   model is loaded (the `ServingSlot` seam, service/serving.py), where
   BentoML answers as it does while starting.

While the worker drains after SIGTERM (service/drain.py), every response carries `Connection: close`, so
uvicorn closes each connection after its answer and clients reconnect to a replica that is not stopping.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from . import documents, openapi
from .codecs import npy, rows, upload, v2
from .drain import Drain
from .errors import ClientError, refusals
from .schemas import ModelInfo, PixelRequest
from .serving import Serving, ServingSlot
from .settings import Limits

log = logging.getLogger("service.front")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Answer = bytes | tuple[bytes, dict[str, str]]  # a 200's body, and any headers of its own
Handler = Callable[[Serving, Scope, bytes], Awaitable[Answer]]

UNEXPECTED = "An unexpected error has occurred, please check the server log."  # BentoML's own 500 text
JSON, MULTIPART, OCTETS = "application/json", "multipart/form-data", "application/octet-stream"
V2, V2_MODELS = "/v2", "/v2/models/"


# The doors: decode with the route's codec, predict through the batcher (admitted first), encode.


async def predict_rows(serving: Serving, scope: Scope, body: bytes) -> bytes:
    with serving.batcher.admitted("/predict"):
        request = rows.decode(body, serving.settings.limits.max_images)
        return rows.encode(await serving.batcher.predict(request))


async def predict_bytes(serving: Serving, scope: Scope, body: bytes) -> bytes:
    with serving.batcher.admitted("/predict_bytes"):
        request = npy.decode(body, serving.settings.limits.max_images)
        return rows.encode(await serving.batcher.predict(request))


async def predict_image(serving: Serving, scope: Scope, body: bytes) -> bytes:
    with serving.batcher.admitted("/predict_image"):  # a flood of uploads is shed with 503 like the rest
        request = await upload.decode(scope, body)
        return rows.encode(await serving.batcher.predict(request))


async def metadata(serving: Serving, scope: Scope, body: bytes) -> bytes:
    """GET or POST (no body, or a JSON object whose fields are ignored, as BentoML's route took it)."""
    if scope["method"] == "POST" and body.strip() and not is_json_object(body):
        raise ClientError(400, "body: must be a JSON object; send {} or use GET /metadata", "body")
    return ModelInfo.__pydantic_serializer__.to_json(documents.model_info(serving.runtime, serving.settings))


async def open_inference(serving: Serving, scope: Scope, body: bytes) -> Answer:
    """The Open Inference Protocol (v2) door: the documents of its GET routes, or an inference."""
    found = v2_route(scope["method"], scope["path"])
    if found is None:
        raise ClientError(404, f"{scope['method']} {scope['path']} is not part of the Open Inference Protocol")
    what, name, version = found
    meta = serving.runtime.metadata
    versions = (meta.version, documents.TRITON_VERSION)  # the contract's, and the number Triton's tools read
    if name is not None and (name != meta.name or version not in (None, *versions)):
        wanted = name if version is None else f"{name} version {version}"
        raise ClientError(404, f"model {wanted!r} not found; this server serves {meta.name!r} version {meta.version}")
    if what != "infer":
        return json.dumps(v2_document(serving, what)).encode()
    with serving.batcher.admitted("/v2/infer"):
        length = dict(scope["headers"]).get(v2.HEADER_LENGTH.encode())
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


def v2_document(serving: Serving, what: V2Route) -> dict:
    """The JSON body of a v2 GET route. Live is always true here (this code runs only once the worker's model is
    loaded; before, BentoML answers); ready too, until SIGTERM starts the drain (503, as /readyz)."""
    meta, settings = serving.runtime.metadata, serving.settings
    if what == "server":
        return documents.server_metadata()
    if what in ("ready", "model_ready") and serving.drain.draining:
        raise ClientError(503, "not ready: the server is stopping (SIGTERM); send to another replica")
    if what in ("live", "ready"):
        return documents.health(what)
    if what == "model_ready":
        return documents.model_ready(meta)
    if what == "config":
        return documents.model_config(meta, settings.limits, settings.batching, serving.runtime.provider)
    if what == "stats":
        return {"model_stats": [serving.batcher.stats.as_triton(meta.name, documents.TRITON_VERSION)]}
    return documents.model_metadata(meta)


async def api_page(serving: Serving, scope: Scope, body: bytes) -> Answer:
    """The API page at /: Swagger UI over /docs.json (service/openapi.py)."""
    title = f"mnist-serve: {serving.runtime.metadata.name}"
    return openapi.page(title).encode(), {"content-type": "text/html; charset=utf-8"}


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


def is_json_object(body: bytes) -> bool:
    """What BentoML's route accepted for an API without parameters, and what its OpenAPI schema allows. JSON
    nested deeper than Python's recursion limit is not an object of this API either (it was a 500)."""
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):
        return False


# The routes: the one list of what the front answers. service/app.py reads it for the paths that run the model.


@dataclass(frozen=True)
class Route:
    handlers: Mapping[str, Handler]  # by method; a method not here goes on to BentoML (405, or its own route)
    body_types: tuple[str, ...]  # what a POST's Content-Type may be (none given counts as JSON where JSON is)
    guarded: bool = True  # the token, the Content-Type and the body limits apply
    runs_model: bool = False


ROUTES: dict[str, Route] = {
    "/predict": Route({"POST": predict_rows}, (JSON,), runs_model=True),
    "/predict_bytes": Route({"POST": predict_bytes}, (JSON,), runs_model=True),
    "/predict_image": Route({"POST": predict_image}, (MULTIPART,), runs_model=True),
    "/metadata": Route({"GET": metadata, "POST": metadata}, (JSON,)),
    "/": Route({"GET": api_page}, (), guarded=False),  # /docs.json is each Front's own (see Front.routes)
}
ANY_METHOD = dict.fromkeys(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"), open_inference)
V2_MODEL_ROUTES = Route(ANY_METHOD, (JSON, OCTETS), runs_model=True)  # /v2/models/...: the token applies
V2_SERVER_ROUTES = Route(ANY_METHOD, (), guarded=False)  # /v2, /v2/health/...: open, as /livez and /readyz
PREDICT_PATHS = tuple(path for path, route in ROUTES.items() if route.runs_model)


def find_route(routes: Mapping[str, Route], path: str) -> Route | None:
    route = routes.get(path)
    if route is None and path.startswith(V2):
        route = V2_MODEL_ROUTES if path.startswith(V2_MODELS) else V2_SERVER_ROUTES
    return route


class Front:
    """ASGI middleware in front of BentoML's app; see the module docstring for what it does, in that order."""

    def __init__(
        self,
        app: ASGIApp,
        slot: ServingSlot,
        limits: Limits = Limits(),
        api_token: str = "",
        drain: Drain | None = None,
    ) -> None:
        self.app = app
        self.slot = slot  # the worker's Serving once its model is loaded: the front's one way to the model
        self.limits = limits
        self.token = f"Bearer {api_token}".encode() if api_token else b""
        self.drain = drain
        # the API document: BentoML's, completed into the service's own (service/openapi.py), once per worker
        self.routes = ROUTES | {"/docs.json": Route({"GET": self.api_document}, (), guarded=False)}
        self._document: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.drain is not None and self.drain.draining:
            send = closing_connection(send)
        route = find_route(self.routes, scope["path"])
        handler = None if route is None else route.handlers.get(scope["method"])
        body: bytes | None = None
        answer: Answer | None = None
        try:
            self.check_headers(scope)
            if route is not None and route.guarded:
                body = await self.guarded_body(scope, route, receive)
                if body is False:
                    return  # the client went away
            serving = self.slot.serving
            if handler is not None and serving is not None:
                if body is None:
                    body = await read_body(receive, self.limits.max_body_bytes)
                    if body is None:
                        return  # the client went away
                answer = await handler(serving, scope, body)
        except ClientError as exc:
            await send_refusal(scope, send, exc)
            return
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"])
            await send_json(send, 500, ClientError(500, UNEXPECTED).body())
            return
        if answer is None:  # BentoML's route, or any route before the worker's model is loaded
            await self.app(scope, receive if body is None else replay(body, receive), send)
            return
        payload, headers = answer if isinstance(answer, tuple) else (answer, None)
        await send_json(send, 200, payload, headers)

    async def api_document(self, serving: Serving, scope: Scope, body: bytes) -> bytes:
        """BentoML's /docs.json, completed once per worker (the model's name and version are in it)."""
        if self._document is None:
            generated = await inner_get(self.app, scope, "/docs.json")
            self._document = json.dumps(openapi.complete(json.loads(generated), serving.runtime.metadata)).encode()
        return self._document

    def check_headers(self, scope: Scope) -> None:
        raw_headers = scope["headers"]
        size = sum(len(k) + len(v) for k, v in raw_headers)
        limits = self.limits
        if len(raw_headers) > limits.max_headers or size > limits.max_header_bytes:
            raise ClientError(
                431,
                f"request headers: {len(raw_headers)} headers of {size} bytes in all; "
                f"the limits are {limits.max_headers} headers and {limits.max_header_bytes} bytes",
            )

    async def guarded_body(self, scope: Scope, route: Route, receive: Receive) -> bytes | Literal[False] | None:
        """On a guarded route: the token, then for a POST the Content-Type and the whole body within the limits.
        The body; None when there is none to read (not a POST); False when the client went away."""
        headers = dict(scope["headers"])
        if self.token and not hmac.compare_digest(headers.get(b"authorization", b""), self.token):
            raise ClientError(
                401,
                "missing or wrong API token: send 'Authorization: Bearer <token>'",
                headers={"www-authenticate": "Bearer"},
            )
        if scope["method"] != "POST":
            return None
        content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if content_type not in route.body_types and not (content_type == "" and JSON in route.body_types):
            expected = " or ".join(route.body_types)
            raise ClientError(415, f"Content-Type must be {expected} for {scope['path']}, got {content_type!r}")
        limit, timeout = self.limits.max_body_bytes, self.limits.body_timeout_s
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ClientError(413, f"request body of {int(declared)} bytes exceeds {limit}")
        try:
            async with asyncio.timeout(timeout):
                body = await read_body(receive, limit)
        except TimeoutError:
            raise ClientError(408, f"the request body did not arrive within {timeout:g} s") from None
        return False if body is None else body


async def send_json(send: Send, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
    """A whole response: JSON unless `headers` (lower-case names) give another content-type."""
    headers = headers or {}
    raw = [] if "content-type" in headers else [(b"content-type", b"application/json")]
    raw += [(b"content-length", str(len(body)).encode())]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_refusal(scope: Scope, send: Send, exc: ClientError) -> None:
    refusals.refused(scope.get("method", ""), scope.get("path", ""), exc.status, exc.message)
    await send_json(send, exc.status, exc.body(), exc.headers)


def closing_connection(send: Send) -> Send:
    """A send() that adds `Connection: close` to the response's headers (uvicorn then closes the connection)."""

    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return closing


async def read_body(receive: Receive, limit: float = float("inf")) -> bytes | None:
    """The whole request body (None if the client went away); ClientError 413 past `limit` bytes."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    if not message.get("more_body", False):  # the usual case: the whole body in one message, no copy
        body = message.get("body", b"")
        if len(body) > limit:
            raise ClientError(413, f"request body exceeds {limit} bytes")
        return body
    chunks = bytearray(message.get("body", b""))
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks += message.get("body", b"")
        if len(chunks) > limit:
            raise ClientError(413, f"request body exceeds {limit} bytes")
        if not message.get("more_body", False):
            return bytes(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that yields `body` once, then defers to the real one (for http.disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


V2Route = Literal["server", "live", "ready", "model", "model_ready", "infer", "config", "stats"]


def v2_route(method: str, path: str) -> tuple[V2Route, str | None, str | None] | None:
    """`/v2/...` -> (what, model name, version); None for a path the protocol does not have."""
    parts = path.strip("/").split("/")
    if parts[0] != "v2":
        return None
    rest = parts[1:]
    if method == "GET" and rest == []:
        return "server", None, None
    if method == "GET" and rest in (["health", "live"], ["health", "ready"]):
        return ("live" if rest[1] == "live" else "ready"), None, None
    if method == "GET" and rest == ["models", "stats"]:
        return "stats", None, None  # every model's: this server's one
    if len(rest) < 2 or rest[0] != "models":
        return None
    name, version, tail = rest[1], None, rest[2:]
    if tail[:1] == ["versions"] and len(tail) >= 2:
        version, tail = tail[1], tail[2:]
    if method == "GET" and tail == []:
        return "model", name, version
    if method == "GET" and tail == ["ready"]:
        return "model_ready", name, version
    if method == "POST" and tail == ["infer"]:
        return "infer", name, version
    if method == "GET" and tail in (["config"], ["stats"]):
        return tail[0], name, version
    return None
