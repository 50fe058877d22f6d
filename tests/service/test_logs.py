"""MNIST_LOG_FORMAT=json: one JSON object per line, with the fields a log pipeline indexes."""

from __future__ import annotations

import io
import json
import logging

from service.errors import RefusalLog
from service.logs import configure_logging


def test_json_lines_carry_time_level_logger_pid_and_message() -> None:
    out = io.StringIO()
    logger = logging.getLogger("tests.json-logs")
    logger.propagate = False
    logger.addHandler(logging.StreamHandler(out))
    configure_logging("json", [logger])
    RefusalLog(logger=logger).refused("POST", "/predict", 400, 'images: "quoted"\nand a newline')
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert set(record) == {"time", "level", "name", "process", "message"}
    assert (record["level"], record["name"]) == ("WARNING", "tests.json-logs")
    assert record["message"] == 'refused POST /predict 400: images: "quoted" and a newline'


def test_text_is_left_as_bentoml_set_it_up() -> None:
    logger = logging.getLogger("tests.text-logs")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    configure_logging("text", [logger])
    assert handler.formatter is None
