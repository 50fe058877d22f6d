"""The check every service tier shares: an answer is what the model runtime gives for that request alone."""

from __future__ import annotations

import numpy as np

from service.errors import ClientError
from service.fastpath import FastPredictor
from service.runtime import ModelRuntime
from service.schemas import PredictResponse


def assert_answers(
    response: PredictResponse, runtime: ModelRuntime, pixels: np.ndarray, activation: str | None
) -> None:
    """`response` is what the runtime gives for `pixels` alone, with `activation` (None: the model's head)."""
    expected = runtime.predict(pixels, activation)
    meta = runtime.metadata
    assert (response.model, response.version) == (meta.name, meta.version)
    assert response.activation == (activation or meta.head)
    assert [p.label for p in response.predictions] == [meta.labels[i] for i in expected.label_indices]
    got = np.array([p.probabilities for p in response.predictions])
    np.testing.assert_allclose(got, expected.probabilities, rtol=1e-5, atol=1e-6)


async def answer(fast: FastPredictor, route: str, payload: bytes) -> tuple[int, bytes]:
    """(status, body) as the door sends them: the fast path's JSON, or its refusal."""
    try:
        return 200, await fast.respond(route, payload)
    except ClientError as exc:
        return exc.status, exc.body()
