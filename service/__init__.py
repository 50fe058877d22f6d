"""Serving side of mnist-serve: depends only on `models/<name>/` (model.onnx + metadata.json), never on training."""
