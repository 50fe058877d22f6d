"""What turning a request body into pixels costs per image, in each form the service takes, beside what the
model costs per image: the other half of "bytes-256 reaches a quarter of the model's images/s" (issue 10).

Each body is decoded by the code the service runs for it (the pydantic request models of /predict and
/predict_bytes, the v2 parser), in-process, on MNIST test images as `loadtests.payloads` encodes them.

    python -m benchmarks.decoding                 # 1 and 256 images per request
    python -m benchmarks.decoding --record        # and write the table to docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import time
from collections.abc import Callable

import numpy as np

from loadtests.baselines.ort_ceiling import ceiling
from loadtests.payloads import load_sample, v2_binary_request
from service.codecs.npy import PredictBytesRequest
from service.codecs.rows import PredictRequest
from service.codecs.v2 import parse_inference

from .report import update_section

MAX_IMAGES = 1024


def json_body(rows: np.ndarray) -> bytes:
    return json.dumps({"images": np.round(rows / 255.0, 4).tolist()}).encode()


def raw_body(rows: np.ndarray) -> bytes:
    return json.dumps({"data": base64.b64encode(rows.tobytes()).decode()}).encode()


def npy_body(rows: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, rows)
    return json.dumps({"data": base64.b64encode(buffer.getvalue()).decode(), "format": "npy"}).encode()


def decoders(rows: np.ndarray) -> dict[str, tuple[int, Callable[[], object]]]:
    """form -> (body bytes, a call that decodes it as the service does)."""
    json_model, bytes_model = PredictRequest.limited_to(MAX_IMAGES), PredictBytesRequest.limited_to(MAX_IMAGES)
    as_json, as_raw, as_npy = json_body(rows), raw_body(rows), npy_body(rows)
    header, blob = v2_binary_request(rows)
    v2 = header + blob
    return {
        "JSON rows (/predict)": (len(as_json), lambda: json_model.model_validate_json(as_json)),
        "base64 raw uint8 (/predict_bytes)": (len(as_raw), lambda: bytes_model.model_validate_json(as_raw)),
        "base64 .npy (/predict_bytes)": (len(as_npy), lambda: bytes_model.model_validate_json(as_npy)),
        "v2 binary UINT8 (/v2/.../infer)": (len(v2), lambda: parse_inference(v2, str(len(header)), "pixels", 1024)),
    }


def us_per_call(call: Callable[[], object], seconds: float = 0.5, repeats: int = 5) -> float:
    """The fastest of `repeats` timings of as many calls as fit in `seconds`, in microseconds per call."""
    best = float("inf")
    for _ in range(repeats):
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds / repeats:
            call()
            calls += 1
        best = min(best, elapsed / calls)
    return 1e6 * best


def measure(sizes: list[int]) -> list[dict[str, float | str]]:
    images, _ = load_sample()
    rows = []
    for n in sizes:
        for form, (size, call) in decoders(images[:n]).items():
            us = us_per_call(call)
            rows.append({"form": form, "images": n, "body_bytes": size, "us": us, "us_per_image": us / n})
    return rows


def table(rows: list[dict], model: dict[int, dict]) -> str:
    lines = [
        f"| {r['form']} | {r['images']} | {r['body_bytes']:,} | {r['us']:.1f} | {r['us_per_image']:.2f} |" for r in rows
    ]
    model_lines = [
        f"| model call, {m['provider']} (1 thread) | {b} | | {m['us_per_call']:.1f} | {m['us_per_call'] / b:.2f} |"
        for b, m in sorted(model.items())
    ]
    return "\n".join(
        [
            "## Decoding a request, per image, beside the model",
            "",
            "Body to pixels as the service does it (validation included), fastest of 5 timings, in-process; the",
            "model call below it is ONNX Runtime on this machine. For the model on CUDA, figures quoted from issue 10",
            "(an H100; not measured by this command): 0.66 us per image at batch 256 (170 us per call), 0.41 at 1024.",
            "",
            "| form | images | body bytes | us per request | us per image |",
            "|---|---|---|---|---|",
            *lines,
            *model_lines,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.decoding", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 256], help="images per request")
    p.add_argument("--record", action="store_true", help="write the table to docs/benchmarks.md")
    args = p.parse_args(argv)
    rows = measure(args.sizes)
    model = {r["batch"]: r for r in ceiling(args.sizes, device="cpu", seconds=1.0)}
    text = table(rows, model)
    print(text)
    if args.record:
        update_section("decoding", text, "python -m benchmarks.decoding " + " ".join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
