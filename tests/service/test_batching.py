"""The batcher in-process, with a stand-in model, each request decoded by its codec as the front does: admission,
batching, ordering, overload."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import numpy as np
import pytest

from service.batching import Batcher
from service.bentoml_internals import register_containers
from service.errors import ClientError
from service.metrics import shed_counter
from service.predictor import RequestBatch, ResponseBatch
from service.schemas import Prediction, PredictResponse
from service.settings import Batching
from tests.service.answers import answer


class StandIn:
    """Labels each image by its first pixel x 10, so every answer shows which rows it came from."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[int] = []  # requests per call
        self.delay = delay

    def response(self, pixels: np.ndarray, activation: str | None) -> PredictResponse:
        predictions = [Prediction(label=str(round(row[0] * 10)), probabilities=[1.0]) for row in pixels]
        return PredictResponse(model="m", version="v", activation=activation or "softmax", predictions=predictions)

    def predict_batch(self, batch: RequestBatch) -> ResponseBatch:
        time.sleep(self.delay)  # blocks the loop, as a long model call would
        self.calls.append(len(batch.sizes))
        bounds = np.cumsum([0, *batch.sizes])
        return ResponseBatch(
            [self.response(batch.pixels[a:b], act) for a, b, act in zip(bounds, bounds[1:], batch.activations)]
        )

    def respond(self, pixels: np.ndarray, activation: str | None) -> PredictResponse:
        self.calls.append(1)
        return self.response(pixels, activation)


def predictor(model: StandIn, **batching: int | bool) -> Batcher:
    register_containers()
    return Batcher(model, Batching(**batching))


def body(*digits: int, activation: str | None = None) -> bytes:
    images = [[d / 10] + [0.0] * 783 for d in digits]
    return json.dumps({"images": images, "activation": activation}).encode()


def labels(payload: bytes) -> list[str]:
    return [p["label"] for p in json.loads(payload)["predictions"]]


@pytest.mark.parametrize("enabled", [True, False], ids=["batched", "inline"])
def test_valid_requests_are_answered_with_the_response_schema(enabled: bool) -> None:
    model = StandIn()

    async def run() -> tuple[int, bytes]:
        return await answer(predictor(model, enabled=enabled), "/predict", body(3, 7, activation="sigmoid"))

    status, payload = asyncio.run(run())
    assert status == 200
    parsed = PredictResponse.model_validate_json(payload)
    assert parsed.activation == "sigmoid"
    assert labels(payload) == ["3", "7"]


@pytest.mark.parametrize(
    ("route", "payload", "field"),
    [
        ("/predict", b"{not json", "body"),
        ("/predict", json.dumps({"images": [[0.5] * 783]}).encode(), "images"),
        ("/predict", json.dumps({"images": [[True] * 784]}).encode(), "images[0][0]"),
        ("/predict", json.dumps({"images": [[0.0] * 784], "activation": "relu"}).encode(), "activation"),
        ("/predict", json.dumps({"images": [[0.0] * 784], "activaton": "sigmoid"}).encode(), "activaton"),
        ("/predict_bytes", json.dumps({"data": "!!!"}).encode(), "data"),
    ],
    ids=["not json", "short row", "booleans", "bad activation", "misspelt field", "bad base64"],
)
def test_a_body_that_does_not_validate_is_refused_naming_the_field(route: str, payload: bytes, field: str) -> None:
    model = StandIn()
    status, body_ = asyncio.run(answer(predictor(model), route, payload))
    assert (status, json.loads(body_)["field"]) == (400, field)
    assert model.calls == []


def test_concurrent_requests_share_calls_and_each_gets_its_own_rows() -> None:
    model = StandIn(delay=0.002)
    fast = predictor(model, max_batch_size=64, max_latency_ms=5000)
    digits = [[i % 10, (i + 1) % 10] for i in range(60)]

    async def run() -> list[tuple[int, bytes]]:
        raw = base64.b64encode((np.array([[5] + [0] * 783], np.uint8)).tobytes()).decode()
        binary = answer(fast, "/predict_bytes", json.dumps({"data": raw}).encode())
        return await asyncio.gather(*(answer(fast, "/predict", body(*d)) for d in digits), binary)

    answers = asyncio.run(run())
    for (status, payload), d in zip(answers, digits, strict=False):
        assert status == 200
        assert labels(payload) == [str(x) for x in d]
    assert labels(answers[-1][1]) == ["0"]  # 5/255 * 10 rounds to 0: the binary route's own scaling
    assert sum(model.calls) == 61
    assert len(model.calls) < 61, "every request ran alone"


def test_a_request_larger_than_max_batch_size_is_split_and_reassembled() -> None:
    model = StandIn()
    digits = [i % 10 for i in range(10)]

    async def run() -> tuple[int, bytes]:
        return await answer(predictor(model, max_batch_size=4), "/predict", body(*digits))

    status, payload = asyncio.run(run())
    assert status == 200
    assert labels(payload) == [str(d) for d in digits]


def test_requests_queued_past_the_latency_budget_get_503() -> None:
    model = StandIn(delay=0.05)  # each call blocks 50 ms; the budget is 10 ms
    fast = predictor(model, max_batch_size=2, max_latency_ms=10)

    async def run() -> list[tuple[int, bytes]]:
        return await asyncio.gather(*(answer(fast, "/predict", body(1)) for _ in range(40)))

    answers = asyncio.run(run())
    rejected = [json.loads(payload)["error"] for status, payload in answers if status == 503]
    assert rejected, "nothing was turned away"
    assert "batching budget of 10 ms" in rejected[0]
    assert any(status == 200 for status, _ in answers)


def test_past_max_queue_a_request_is_refused_at_once() -> None:
    """The first `max_queue` requests wait in the batcher; the next ones are shed before they are parsed."""
    model = StandIn(delay=0.01)
    fast = predictor(model, max_queue=4, max_latency_ms=5000)
    shed = shed_counter().labels(route="/predict")
    before = shed._value.get()  # noqa: SLF001 - prometheus_client's counters have no public getter

    async def run() -> list[tuple[int, bytes]]:
        return await asyncio.gather(*(answer(fast, "/predict", body(i % 10)) for i in range(10)))

    answers = asyncio.run(asyncio.wait_for(run(), 30))
    assert [status for status, _ in answers] == [200] * 4 + [503] * 6  # in arrival order
    assert sum(model.calls) == 4  # the shed ones never reached the model
    assert shed._value.get() - before == 6  # noqa: SLF001
    assert json.loads(answers[-1][1]) == {
        "error": "overloaded: 4 requests are queued (MNIST_MAX_QUEUE=4); retry after 1 s"
    }
    assert fast.queued == 0


def test_a_shed_request_is_told_when_to_retry() -> None:
    fast = predictor(StandIn(), max_queue=1)
    fast._queued = 1  # noqa: SLF001 - a full queue
    with pytest.raises(ClientError) as refused, fast.admitted("/predict"):
        pass
    assert (refused.value.status, refused.value.headers) == (503, {"retry-after": "1"})


def test_an_admitted_request_gives_its_place_back_however_it_ends() -> None:
    fast = predictor(StandIn(), max_queue=2)
    with fast.admitted("/predict"):
        assert fast.queued == 1
        with fast.admitted("/predict"):
            assert fast.queued == 2
    assert fast.queued == 0
    with pytest.raises(ClientError), fast.admitted("/predict"):
        raise ClientError(400, "a bad body, found after admission")
    assert fast.queued == 0
