"""ASGI middleware in front of everything: HTTP-level limits and the optional API token, before BentoML parses.

- headers: more than `max_headers` or `max_header_bytes` in all -> 431 (uvicorn's httptools parser has no
  limit of its own: a 64 MiB header was accepted);
- guarded routes: a wrong Content-Type -> 415 (BentoML reads any body as JSON when the type is unknown), a
  body over `max_body_bytes` -> 413 (declared or counted), a body that does not arrive within
  `body_timeout_s` -> 408 (a Content-Length larger than the body was held 30 s, then 504);
- with a token set (MNIST_API_TOKEN), guarded routes need `Authorization: Bearer <token>` -> else 401.
  Health, readiness, metrics and the OpenAPI page stay open: orchestrators and scrapers call them.
- while the worker drains after SIGTERM (service/drain.py), every response carries `Connection: close`, so
  uvicorn closes each connection after its answer and clients reconnect to a replica that is not stopping.
Every refusal is one line in the refusal log (service/errors.py).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from .drain import Drain
from .errors import ClientError, refusals

V2_MODELS = "/v2/models/"  # the Open Inference Protocol's model routes: guarded like the others
V2_BODIES = "application/json application/octet-stream"  # JSON, or JSON + binary tensor data

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        json_routes: Iterable[str] = (),
        upload_routes: Iterable[str] = (),
        max_headers: int = 100,
        max_header_bytes: int = 16384,
        body_timeout_s: float = 30.0,
        api_token: str = "",
        drain: Drain | None = None,
    ) -> None:
        self.app = app
        self.drain = drain
        self.max_body_bytes = max_body_bytes
        self.expected = dict.fromkeys(json_routes, "application/json") | dict.fromkeys(
            upload_routes, "multipart/form-data"
        )
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes
        self.body_timeout_s = body_timeout_s
        self.token = f"Bearer {api_token}".encode() if api_token else b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.drain is not None and self.drain.draining:
            send = closing_connection(send)
        try:
            receive = await self.check(scope, receive)
        except ClientError as exc:
            await send_refusal(scope, send, exc)
            return
        if receive is not None:
            await self.app(scope, receive, send)

    async def check(self, scope: Scope, receive: Receive) -> Receive | None:
        """The receive() to hand on (the body already read, for guarded POSTs), None if the client left."""
        raw_headers = scope["headers"]
        size = sum(len(k) + len(v) for k, v in raw_headers)
        if len(raw_headers) > self.max_headers or size > self.max_header_bytes:
            raise ClientError(
                431,
                f"request headers: {len(raw_headers)} headers of {size} bytes in all; "
                f"the limits are {self.max_headers} headers and {self.max_header_bytes} bytes",
            )
        path = scope["path"]
        protected = path in self.expected or path == "/metadata" or path.startswith(V2_MODELS)
        if not protected:
            return receive
        headers = dict(raw_headers)
        if self.token and not hmac.compare_digest(headers.get(b"authorization", b""), self.token):
            raise ClientError(
                401,
                "missing or wrong API token: send 'Authorization: Bearer <token>'",
                headers={"www-authenticate": "Bearer"},
            )
        allowed = self.expected.get(path) or (V2_BODIES if path.startswith(V2_MODELS) else None)
        if scope["method"] != "POST" or allowed is None:
            return receive
        content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if content_type not in allowed.split() and not (content_type == "" and "application/json" in allowed):
            expected = " or ".join(allowed.split())
            raise ClientError(415, f"Content-Type must be {expected} for {path}, got {content_type!r}")
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise ClientError(413, f"request body of {int(declared)} bytes exceeds {self.max_body_bytes}")
        try:
            async with asyncio.timeout(self.body_timeout_s):
                body = await read_body(receive, self.max_body_bytes)
        except TimeoutError:
            raise ClientError(408, f"the request body did not arrive within {self.body_timeout_s:g} s") from None
        return None if body is None else replay(body, receive)


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
