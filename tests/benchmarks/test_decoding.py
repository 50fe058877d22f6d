"""benchmarks.decoding times the service's own decoders on bodies that all carry the same images."""

from __future__ import annotations

import numpy as np

from benchmarks import decoding
from loadtests.payloads import load_sample


def test_every_form_decodes_to_the_same_pixels() -> None:
    rows = load_sample()[0][:3]
    decoded = {}
    for form, (size, call) in decoding.decoders(rows).items():
        assert size > 0
        decoded[form] = call().pixels  # the request models and the v2 parse both hold them as `pixels`
    exact = rows.astype(np.float32) / np.float32(255)
    json_pixels = decoded.pop("JSON rows (/predict)")
    np.testing.assert_allclose(json_pixels, exact, atol=5e-5)  # JSON carries 4 decimals
    assert len(decoded) == 3
    for pixels in decoded.values():  # the binary forms carry the uint8 pixels themselves
        np.testing.assert_array_equal(pixels, exact)


def test_the_table_puts_the_model_beside_the_decoders() -> None:
    rows = [{"form": "v2 binary UINT8 (/v2/.../infer)", "images": 256, "body_bytes": 200866, "us": 103.8}]
    rows[0]["us_per_image"] = rows[0]["us"] / 256
    model = {256: {"provider": "CPUExecutionProvider", "us_per_call": 2825.2}}
    table = decoding.table(rows, model)
    assert "| v2 binary UINT8 (/v2/.../infer) | 256 | 200,866 | 103.8 | 0.41 |" in table
    assert "| model call, CPUExecutionProvider (1 thread) | 256 | | 2825.2 | 11.04 |" in table
    assert "quoted from issue 10" in table  # the H100 figures are not this command's
