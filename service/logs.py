"""Log output: BentoML's text lines by default; one JSON object per line with MNIST_LOG_FORMAT=json."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pythonjsonlogger.json import JsonFormatter

JSON_FIELDS = "{asctime}{levelname}{name}{process}{message}"


def configure_logging(log_format: str, loggers: Iterable[logging.Logger] | None = None) -> None:
    """In each worker, after BentoML has set up its handlers: switch their formatter to JSON when asked.
    `loggers`: whose handlers to switch (default: the root's and BentoML's, where BentoML puts them)."""
    # python-multipart warns once per malformed form; the refusal log already has one line for it
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
    # the service's own INFO lines (which model, on which provider, in which worker) reach BentoML's handlers,
    # whose root logger is at WARNING: a restarted worker shows up as a new pid
    logging.getLogger("service").setLevel(logging.INFO)
    if log_format != "json":
        return
    formatter = JsonFormatter(JSON_FIELDS, style="{", rename_fields={"levelname": "level", "asctime": "time"})
    for logger in loggers or (logging.getLogger(), logging.getLogger("bentoml")):
        for handler in logger.handlers:
            handler.setFormatter(formatter)
