"""ASGI middleware that answers oversized bodies (413) and wrong content types (415) before BentoML parses them.

BentoML reads any body as JSON when the content type is unknown, and reads it whole whatever its size;
this guard makes both limits explicit and documented.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


async def send_json(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, message: str) -> None:
    await send_json(send, status, error_body(message))


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        json_routes: Iterable[str] = (),
        upload_routes: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.expected = dict.fromkeys(json_routes, "application/json") | dict.fromkeys(
            upload_routes, "multipart/form-data"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.expected:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        expected = self.expected[scope["path"]]
        if content_type != expected and not (content_type == "" and expected == "application/json"):
            await send_error(send, 415, f"Content-Type must be {expected} for {scope['path']}, got {content_type!r}")
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_error(send, 413, f"request body of {int(declared)} bytes exceeds {self.max_body_bytes}")
            return
        if declared is None:  # chunked: read it here, counting, then hand the app the whole body
            body = bytearray()
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                body += message.get("body", b"")
                if len(body) > self.max_body_bytes:
                    await send_error(send, 413, f"request body exceeds {self.max_body_bytes} bytes")
                    return
                if not message.get("more_body", False):
                    break
            receive = replay(bytes(body), receive)
        await self.app(scope, receive, send)


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
