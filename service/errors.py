"""Errors: the model folder that cannot be served, the input that breaks the contract, and refusals (one error
type for every 4xx/503 the front sends, one JSON body, one log line each).

A refused request is the client's problem, not the server's: it is logged at WARNING as one line (route,
status, reason), never with a traceback, and under a flood at most `burst` lines per `window` seconds
followed by one summary line, so a misbehaving client cannot fill the disk or drown the server's own errors.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import Counter

from pydantic import ValidationError

log = logging.getLogger("service.refused")


class ModelLoadError(RuntimeError):
    """The model folder cannot be served: missing, corrupt, or not what its metadata says."""


class InputError(ValueError):
    """A request's pixels break the input contract; `field` names where. Raised by the codecs, answered 400."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclasses.dataclass(eq=False)
class ClientError(Exception):
    """A request refused with `status`; `field` names the part of the request at fault, when there is one."""

    status: int
    message: str
    field: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @classmethod
    def from_input(cls, exc: InputError) -> ClientError:
        return cls(400, str(exc), exc.field)

    @classmethod
    def from_validation(cls, exc: ValidationError) -> ClientError:
        """The first problem pydantic found, as `images[0][5]: Input should be a valid number`."""
        first = exc.errors(include_url=False, include_input=False)[0]
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, InputError):  # raised by our own validators: keep its field
            return cls.from_input(cause)
        where = location(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "json_invalid":
            where, message = "body", f"not valid JSON ({message.removeprefix('Invalid JSON: ')})"
        elif first["type"] == "model_type":
            where, message = "body", "must be a JSON object"
        elif first["type"] == "extra_forbidden":
            message = "unknown field; check its spelling (the OpenAPI page at / lists the fields)"
        return cls(400, f"{where}: {message}" if where else message, where or None)

    def body(self) -> bytes:
        content: dict[str, str] = {"error": self.message}
        if self.field:
            content["field"] = self.field
        return json.dumps(content).encode()


def location(loc: tuple[int | str, ...]) -> str:
    """pydantic's ("images", 0, 5) -> "images[0][5]"."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class RefusalLog:
    """One WARNING line per refusal, at most `burst` per `window` seconds; the rest are counted and summed up
    in one line when the next window opens. Thread-safe: uploads are decoded in worker threads."""

    def __init__(self, burst: int = 20, window: float = 10.0, logger: logging.Logger = log) -> None:
        self.burst, self.window, self.logger = burst, window, logger
        self._lock = threading.Lock()
        self._window_start = float("-inf")
        self._logged = 0
        self._suppressed: Counter[int] = Counter()

    def refused(self, method: str, path: str, status: int, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._window_start >= self.window:
                if self._suppressed:
                    by_status = ", ".join(f"{count} x {code}" for code, count in sorted(self._suppressed.items()))
                    self.logger.warning(
                        "refused %d more requests in the last %.0f s (%s); not logged one by one",
                        sum(self._suppressed.values()),
                        self.window,
                        by_status,
                    )
                self._window_start, self._logged, self._suppressed = now, 0, Counter()
            if self._logged >= self.burst:
                self._suppressed[status] += 1
                return
            self._logged += 1
        self.logger.warning("refused %s %s %d: %s", method, path[:100], status, printable(reason[:300]))


def printable(text: str) -> str:
    """One line, whatever a client put in a field name or a file: no forged log lines, no terminal escapes."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


refusals = RefusalLog()
