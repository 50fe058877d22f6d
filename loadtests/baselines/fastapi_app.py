"""Baseline: a minimal FastAPI app doing the same ONNX Runtime call per request, no batching.

    uvicorn loadtests.baselines.fastapi_app:app --port 3001 --no-access-log --loop uvloop --http httptools

Written the way a competent engineer would in a few dozen lines: an async endpoint calling ONNX Runtime
inline, orjson in and out, the same uvicorn extras as the service (uvloop, httptools), no access log.
It validates less than the service (only shape and range) and returns the same response shape.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import FastAPI, HTTPException, Request, Response

MODEL_DIR = Path(os.environ.get("MNIST_MODELS_DIR", Path(__file__).resolve().parents[2] / "models"))
MODEL = MODEL_DIR / os.environ.get("MNIST_MODEL", "default")
META = json.loads((MODEL / "metadata.json").read_text())
LABELS = META["labels"]

options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.add_session_config_entry("session.intra_op.allow_spinning", "0")
session = ort.InferenceSession(str(MODEL / "model.onnx"), options, providers=["CPUExecutionProvider"])
app = FastAPI()


@app.get("/readyz")
async def readyz() -> dict[str, bool]:
    return {"ready": True}


@app.post("/predict")
async def predict(request: Request) -> Response:
    try:
        x = np.asarray(orjson.loads(await request.body())["images"], dtype=np.float32)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise HTTPException(400, f"bad body: {exc}") from exc
    if x.ndim != 2 or x.shape[1] != 784 or not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise HTTPException(400, "images must be (N, 784) finite values in [0, 1]")
    logits = session.run(None, {"pixels": x})[0]
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = z / z.sum(axis=1, keepdims=True)
    predictions = [{"label": LABELS[i], "probabilities": p} for i, p in zip(probs.argmax(1).tolist(), probs.tolist())]
    body = {"model": META["name"], "version": META["version"], "activation": "softmax", "predictions": predictions}
    return Response(orjson.dumps(body), media_type="application/json")
