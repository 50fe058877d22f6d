"""The check every service tier shares: an answer is what the model runtime gives for that request alone."""

from __future__ import annotations

import numpy as np

from service.batching import Batcher
from service.codecs import npy, rows
from service.errors import ClientError
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


DECODERS = {"/predict": rows.decode, "/predict_bytes": npy.decode}


async def answer(batcher: Batcher, route: str, payload: bytes, max_images: int = 1024) -> tuple[int, bytes]:
    """(status, body) as the front's door sends them (service/front.py): admitted, decoded by the route's codec,
    predicted through the batcher, encoded; or the refusal."""
    try:
        with batcher.admitted(route):
            request = DECODERS[route](payload, max_images)
            return 200, rows.encode(await batcher.predict(request))
    except ClientError as exc:
        return exc.status, exc.body()
