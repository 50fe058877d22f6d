"""The servers a load test can start: the service, the service with batching off, and the FastAPI baseline."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from .server import Server, bentoml_command, free_port, running_server

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Target:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    kind: str = "bentoml"  # bentoml | fastapi
    about: str = ""

    def command(self, port: int) -> list[str]:
        if self.kind == "fastapi":
            app = "loadtests.baselines.fastapi_app:app"
            options = ["--no-access-log", "--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]
            return [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port), *options]
        return bentoml_command(port)

    def start(self, cpus: str | None = None, env: dict[str, str] | None = None) -> AbstractContextManager[Server]:
        port = free_port()
        return running_server(self.command(port), port=port, env={**self.env, **(env or {})}, cpus=cpus)


TARGETS = {
    "service": Target("service", about="the BentoML service with adaptive batching (defaults)"),
    "service-nobatch": Target("service-nobatch", {"MNIST_BATCHING": "0"}, about="the same service with batching off"),
    "fastapi": Target("fastapi", kind="fastapi", about="minimal FastAPI + uvicorn, ONNX Runtime inline per request"),
}
