"""The real batching path in-process: the predictor core, BentoML's batch containers and the batcher
(service/batching.py), each answer compared row by row with the model runtime called on that request alone."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.batching import Batcher
from service.bentoml_internals import RequestContainer, ResponseContainer, register_containers
from service.codecs.rows import PredictRequest
from service.predictor import Predictor, RequestBatch, ResponseBatch
from service.runtime import ModelRuntime
from service.schemas import PredictResponse
from service.settings import Batching
from tests.service.answers import answer, assert_answers

ACTIVATION = st.sampled_from([None, "softmax", "sigmoid"])


def requests_from(sample: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Consecutive slices of the sample, one per request, as (n, 784) float32 in [0, 1]."""
    bounds = np.cumsum([0, *sizes])
    return [sample[a:b].astype(np.float32) / 255 for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=40)
@given(plan=st.lists(st.tuples(st.integers(1, 6), ACTIVATION), min_size=1, max_size=6))
def test_each_request_in_a_batch_gets_its_own_rows_and_activation(
    predictor: Predictor, sample: tuple[np.ndarray, np.ndarray], plan: list[tuple[int, str | None]]
) -> None:
    sizes, activations = [n for n, _ in plan], [a for _, a in plan]
    requests = requests_from(sample[0], sizes)
    batch = RequestBatch(np.concatenate(requests), sizes, activations)
    responses = predictor.predict_batch(batch).responses
    assert len(responses) == len(plan)
    for response, pixels, activation in zip(responses, requests, activations, strict=True):
        assert_answers(response, predictor.runtime, pixels, activation)


def test_a_mixed_batch_is_not_answered_with_the_first_requests_activation(
    predictor: Predictor, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    requests = requests_from(sample[0], [2, 2, 1])
    activations = ["softmax", "sigmoid", None]
    responses = predictor.predict_batch(RequestBatch(np.concatenate(requests), [2, 2, 1], activations)).responses
    assert [r.activation for r in responses] == ["softmax", "sigmoid", predictor.runtime.metadata.head]
    for response, pixels, activation in zip(responses, requests, activations, strict=True):
        assert_answers(response, predictor.runtime, pixels, activation)


@pytest.mark.parametrize("activation", [None, "softmax", "sigmoid"])
def test_one_request_alone_is_answered_like_the_runtime(
    predictor: Predictor, sample: tuple[np.ndarray, np.ndarray], activation: str | None
) -> None:
    (pixels,) = requests_from(sample[0], [7])
    assert_answers(predictor.respond(pixels, activation), predictor.runtime, pixels, activation)


def test_a_batch_whose_sizes_do_not_cover_its_rows_is_refused(predictor: Predictor) -> None:
    with pytest.raises(ValueError, match="does not match sizes"):
        predictor.predict_batch(RequestBatch(np.zeros((3, 784), np.float32), [1, 1], [None, None]))
    with pytest.raises(ValueError, match="does not match sizes"):
        predictor.predict_batch(RequestBatch(np.zeros((2, 784), np.float32), [1, 1], [None]))


def test_pigeon_labels_small_digits_as_positive(pigeon_runtime: ModelRuntime, sample: tuple[np.ndarray, np.ndarray]):
    images, digits = sample
    response = Predictor(pigeon_runtime).respond(images.astype(np.float32) / 255, None)
    small = np.array([p.label == "0/1/2" for p in response.predictions])
    assert {p.label for p in response.predictions} == {"0/1/2", "not 0/1/2"}
    assert (small == (digits < 3)).mean() >= 0.97
    p = np.array([pred.probabilities[0] for pred in response.predictions])
    np.testing.assert_array_equal(small, p > 0.5)  # the label is the sigmoid's decision


# BentoML's adaptive batcher batches, splits and merges whole requests through these containers.


def parsed(pixels: np.ndarray, activation: str | None) -> PredictRequest:
    return PredictRequest.model_validate({"images": pixels.tolist(), "activation": activation})


def test_bentoml_containers_batch_requests_and_hand_each_its_response(
    predictor: Predictor, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    register_containers()
    pixels = requests_from(sample[0], [3, 1, 4])
    activations = ["sigmoid", None, "softmax"]
    requests = [parsed(p, a) for p, a in zip(pixels, activations, strict=True)]
    batch, indices = RequestContainer.batches_to_batch(requests)
    assert batch.sizes == [3, 1, 4]
    assert indices == [0, 1, 2, 3]
    np.testing.assert_array_equal(batch.pixels, np.concatenate(pixels))
    responses = ResponseContainer.batch_to_batches(predictor.predict_batch(batch), indices)
    for response, p, a in zip(responses, pixels, activations, strict=True):
        assert_answers(response, predictor.runtime, p, a)
    with pytest.raises(RuntimeError, match="3 responses for 2 requests"):
        ResponseContainer.batch_to_batches(predictor.predict_batch(batch), [0, 1, 2])


def test_bentoml_containers_split_a_request_and_merge_its_answers(
    predictor: Predictor, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    (pixels,) = requests_from(sample[0], [10])
    request = parsed(pixels, "sigmoid")
    parts = RequestContainer.batch_to_batches(request, [0, 4, 8, 10])
    assert [p.rows for p in parts] == [4, 4, 2]
    assert all(p.activation == "sigmoid" for p in parts)
    np.testing.assert_array_equal(np.concatenate([p.pixels for p in parts]), pixels)
    answers = [predictor.respond(p.pixels, p.activation) for p in parts]
    merged, indices = ResponseContainer.batches_to_batch(answers)
    assert indices == [0, 10]
    assert ResponseContainer.get_batch_size(merged, 0) == 10
    assert RequestContainer.get_batch_size(request, 0) == 10
    assert_answers(merged, predictor.runtime, pixels, "sigmoid")


# The batcher (BentoML's CorkDispatcher) over the real predictor, batching on and off.


def fast_predictor(predictor: Predictor, **batching: int | bool) -> Batcher:
    register_containers()
    return Batcher(predictor, Batching(**batching))


def json_body(pixels: np.ndarray, activation: str | None) -> bytes:
    return json.dumps({"images": pixels.tolist(), "activation": activation}).encode()


def bytes_body(images: np.ndarray, activation: str | None) -> bytes:
    return json.dumps({"data": base64.b64encode(images.tobytes()).decode(), "activation": activation}).encode()


@pytest.mark.parametrize(
    "batching", [{"enabled": True, "max_batch_size": 64, "max_latency_ms": 5000}, {"enabled": False}], ids=["on", "off"]
)
def test_concurrent_mixed_requests_through_the_batcher(
    predictor: Predictor, sample: tuple[np.ndarray, np.ndarray], batching: dict
) -> None:
    images = sample[0]
    sizes = [1 + i % 5 for i in range(24)]
    activations = [(None, "softmax", "sigmoid")[i % 3] for i in range(24)]
    pixels = requests_from(images, sizes)
    fast = fast_predictor(predictor, **batching)
    bounds = np.cumsum([0, *sizes])

    async def run() -> list[tuple[int, bytes]]:
        calls = []
        for i, (p, a) in enumerate(zip(pixels, activations, strict=True)):
            if i % 2:  # every other request in the binary form: both routes share the batcher
                calls.append(answer(fast, "/predict_bytes", bytes_body(images[bounds[i] : bounds[i + 1]], a)))
            else:
                calls.append(answer(fast, "/predict", json_body(p, a)))
        return await asyncio.gather(*calls)

    answers = asyncio.run(run())
    for (status, payload), p, a in zip(answers, pixels, activations, strict=True):
        assert status == 200, payload
        assert_answers(PredictResponse.model_validate_json(payload), predictor.runtime, p, a)


def test_a_request_larger_than_max_batch_size_is_split_and_reassembled(
    predictor: Predictor, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    images = sample[0][:23]
    fast = fast_predictor(predictor, max_batch_size=4, max_latency_ms=5000)

    async def run() -> tuple[int, bytes]:
        return await answer(fast, "/predict_bytes", bytes_body(images, "sigmoid"))

    status, payload = asyncio.run(run())
    assert status == 200, payload
    assert_answers(
        PredictResponse.model_validate_json(payload), predictor.runtime, images.astype(np.float32) / 255, "sigmoid"
    )


def test_an_unsplit_answer_merges_to_itself(predictor: Predictor, sample: tuple[np.ndarray, np.ndarray]) -> None:
    (pixels,) = requests_from(sample[0], [3])
    answer = predictor.respond(pixels, None)
    merged, indices = ResponseContainer.batches_to_batch([answer])
    assert indices == [0, 3]
    assert merged == answer


def test_containers_are_registered_for_requests_and_responses() -> None:
    from bentoml._internal.runner.container import DataContainerRegistry

    register_containers()
    assert DataContainerRegistry.find_by_single_type(PredictRequest) is RequestContainer  # subclasses of PixelRequest
    assert DataContainerRegistry.find_by_single_type(PredictResponse) is ResponseContainer
    assert DataContainerRegistry.find_by_batch_type(ResponseBatch) is ResponseContainer


class CountingPredictor:
    """The real predictor, recording the rows of each ONNX Runtime call."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.rows_per_call: list[int] = []

    def predict_batch(self, batch: RequestBatch) -> ResponseBatch:
        self.rows_per_call.append(len(batch.pixels))
        return self.predictor.predict_batch(batch)

    def respond(self, pixels: np.ndarray, activation: str | None) -> PredictResponse:
        self.rows_per_call.append(len(pixels))
        return self.predictor.respond(pixels, activation)


def test_max_batch_size_caps_the_rows_of_each_call(predictor: Predictor, sample: tuple[np.ndarray, np.ndarray]):
    counting = CountingPredictor(predictor)
    fast = fast_predictor(counting, max_batch_size=8, max_latency_ms=5000)  # type: ignore[arg-type]
    pixels = requests_from(sample[0], [3] * 12)

    async def run() -> list[tuple[int, bytes]]:
        return await asyncio.gather(*(answer(fast, "/predict", json_body(p, None)) for p in pixels))

    answers = asyncio.run(run())
    assert all(status == 200 for status, _ in answers)
    assert sum(counting.rows_per_call) == 36
    assert max(counting.rows_per_call) <= 8  # counted in images, not requests: 2 requests of 3 rows per call
    assert len(counting.rows_per_call) < 12  # and still batched


@pytest.mark.parametrize("container", [RequestContainer, ResponseContainer])
def test_batches_never_cross_a_process_boundary(container: type) -> None:
    with pytest.raises(NotImplementedError, match=f"^{container.__name__} batches in-process only$"):
        container.to_payload(None, 0)
    with pytest.raises(NotImplementedError, match=f"^{container.__name__} batches in-process only$"):
        container.from_payload(None)
