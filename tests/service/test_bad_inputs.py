"""Every request of the bad-input corpus gets its 4xx, names the problem, and writes one log line, no traceback."""

from __future__ import annotations

import logging
import re

import pytest
from starlette.testclient import TestClient

from tests.service.bad_inputs import CORPUS, BadRequest


@pytest.mark.parametrize("bad", CORPUS, ids=[bad.name for bad in CORPUS])
def test_each_bad_request_is_refused_with_its_reason(
    client: TestClient, bad: BadRequest, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        response = bad.send(client)
    assert response.status_code == bad.status, response.text
    if bad.status == 200:  # in the corpus because it once got a 500
        return
    body = response.json()
    assert set(body) <= {"error", "field"}, body  # the OpenAPI document's InvalidArgument: error (+ field)
    assert re.search(bad.error, body["error"]), body["error"]
    assert body.get("field") == bad.field
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.exc_info) for r in logged] == [("service.refused", None)], [r.getMessage() for r in logged]
    line = logged[0].getMessage()
    assert line.startswith(f"refused {bad.method} {bad.path} {bad.status}: ")
    assert "\n" not in line


def test_the_corpus_covers_every_route_and_status() -> None:
    assert {bad.path for bad in CORPUS} >= {"/predict", "/predict_bytes", "/predict_image", "/metadata"}
    assert {bad.status for bad in CORPUS} >= {400, 415, 431}
