"""Refusals: the error body, the field named from pydantic's location, and the rate-limited refusal log."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError

from service import errors
from service.codecs.rows import PredictRequest
from service.errors import ClientError, RefusalLog, location


def refusal(body: str) -> ClientError:
    with pytest.raises(ValidationError) as caught:
        PredictRequest.model_validate_json(body)
    return ClientError.from_validation(caught.value)


@pytest.mark.parametrize(
    ("loc", "expected"), [((), ""), (("images",), "images"), (("images", 0, 5), "images[0][5]"), (("a", "b"), "a.b")]
)
def test_location_reads_as_the_json_path(loc: tuple, expected: str) -> None:
    assert location(loc) == expected


def test_a_validator_error_keeps_its_own_field() -> None:
    error = refusal('{"images": [[0.5]]}')
    assert (error.status, error.field) == (400, "images")
    assert json.loads(error.body()) == {
        "error": "images: expected shape (N, 784) or (N, 28, 28), got (1, 1)",
        "field": "images",
    }


def test_a_body_without_a_field_has_no_field_key() -> None:
    assert json.loads(ClientError(503, "overloaded").body()) == {"error": "overloaded"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_is_logged_as_a_burst_then_one_summary(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    monkeypatch.setattr(errors.time, "monotonic", clock)
    log = RefusalLog(burst=3, window=10.0)
    with caplog.at_level(logging.WARNING, logger="service.refused"):
        for i in range(10):
            log.refused("POST", "/predict", 400 if i % 2 else 503, f"reason {i}")
        clock.now += 9.9
        log.refused("POST", "/predict", 400, "still in the window")
        assert [r.getMessage() for r in caplog.records] == [
            f"refused POST /predict {s}: reason {i}" for i, s in [(0, 503), (1, 400), (2, 503)]
        ]
        clock.now += 0.1
        log.refused("POST", "/predict", 415, "the next window")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[3:] == [
        "refused 8 more requests in the last 10 s (5 x 400, 3 x 503); not logged one by one",
        "refused POST /predict 415: the next window",
    ]
    assert all(r.exc_info is None for r in caplog.records)


def test_a_reason_cannot_forge_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="service.refused"):
        RefusalLog().refused("POST", "/predict_image", 400, "'x\nrefused GET /admin 200: ok\x1b[31m' is not a field")
    (record,) = caplog.records
    assert record.getMessage() == "refused POST /predict_image 400: 'x refused GET /admin 200: ok [31m' is not a field"
