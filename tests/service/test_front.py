"""The front's HTTP limits on their own, over a stand-in app and no model loaded (every route is handed on):
header limits, body limits and time-out, the API token."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from service.drain import Drain
from service.front import Front
from service.serving import ServingSlot
from service.settings import Limits

Message = dict[str, Any]


async def echo(scope: dict, receive: Any, send: Any) -> None:  # noqa: ANN401
    """The app behind the front: answers 200 with the body it received."""
    message = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": message.get("body", b"")})


def call(
    guard: Front,
    path: str = "/predict",
    headers: dict[str, str] | None = None,
    chunks: list[bytes | None] | None = None,
    method: str = "POST",
) -> tuple[int, dict, dict]:
    """(status, JSON body or {"echo": body}, response headers) of one request; None in `chunks` never arrives."""
    raw = [
        (k.lower().encode(), v.encode()) for k, v in ({"content-type": "application/json"} | (headers or {})).items()
    ]
    scope = {"type": "http", "method": method, "path": path, "headers": raw}
    pending = list(chunks if chunks is not None else [b"{}"])
    sent: list[Message] = []

    async def receive() -> Message:
        chunk = pending.pop(0)
        if chunk is None:
            await asyncio.sleep(3600)  # a client that stopped sending
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    status, body = sent[0]["status"], sent[1]["body"]
    response_headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return status, (json.loads(body) if status != 200 else {"echo": body}), response_headers


def guard(api_token: str = "", drain: Drain | None = None, **limits: Any) -> Front:  # noqa: ANN401
    """The front's HTTP limits over `echo`, with no model loaded: every route goes on to the app behind."""
    return Front(echo, ServingSlot(), Limits(**({"max_body_bytes": 1024} | limits)), api_token, drain)


def test_a_guarded_body_is_read_whole_and_handed_on() -> None:
    assert call(guard(), chunks=[b'{"a"', b": 1}"])[:2] == (200, {"echo": b'{"a": 1}'})


def test_too_many_headers_or_bytes_of_headers_get_431() -> None:
    status, body, _ = call(guard(max_headers=10), headers={f"x-{i}": "1" for i in range(10)})
    assert status == 431
    assert "11 headers" in body["error"]
    assert "limits are 10 headers" in body["error"]
    status, body, _ = call(guard(max_header_bytes=1024), path="/livez", headers={"x-big": "a" * 1024}, method="GET")
    assert status == 431
    assert "1024 bytes" in body["error"]
    assert call(guard(max_headers=10), headers={f"x-{i}": "1" for i in range(9)})[0] == 200  # exactly at the limit


def test_a_body_over_the_limit_gets_413_declared_or_counted() -> None:
    assert call(guard(), headers={"content-length": "1025"}, chunks=[b""])[0] == 413
    assert call(guard(), chunks=[b"x" * 1000, b"x" * 25])[0] == 413
    assert call(guard(), chunks=[b"x" * 1000, b"x" * 24])[0] == 200


def test_a_body_that_stops_arriving_gets_408() -> None:
    status, body, _ = call(guard(body_timeout_s=0.05), chunks=[b'{"images": ', None])
    assert (status, body) == (408, {"error": "the request body did not arrive within 0.05 s"})


def test_a_wrong_content_type_gets_415() -> None:
    status, body, _ = call(guard(), headers={"content-type": "text/plain"})
    assert (status, body["error"]) == (415, "Content-Type must be application/json for /predict, got 'text/plain'")


@pytest.mark.parametrize(
    ("path", "authorization", "status"),
    [
        ("/predict", None, 401),
        ("/predict", "Bearer wrong", 401),
        ("/predict", "bearer s3cret", 401),
        ("/predict", "Bearer s3cret", 200),
        ("/metadata", None, 401),
        ("/livez", None, 200),  # health, readiness, metrics and the docs stay open
        ("/metrics", None, 200),
    ],
)
def test_the_api_token_guards_the_model_routes_only(path: str, authorization: str | None, status: int) -> None:
    headers = {"authorization": authorization} if authorization else {}
    got, body, response_headers = call(guard(api_token="s3cret"), path=path, headers=headers)
    assert got == status, body
    if status == 401:
        assert response_headers["www-authenticate"] == "Bearer"
        assert body == {"error": "missing or wrong API token: send 'Authorization: Bearer <token>'"}


def test_without_a_token_nothing_asks_for_one() -> None:
    assert call(guard(), headers={})[0] == 200
