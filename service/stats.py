"""Each worker's cumulative model statistics, in the JSON of Triton's statistics extension (`GET /v2/.../stats`).

Triton's own tools read them: `tritonclient`'s `get_inference_statistics`, and `perf_analyzer`, which reads two
samples around each measurement and prints the server's side of a request (queue, compute input, infer,
output). Counts and nanosecond totals only grow, so a reader takes the difference between two samples.

What is counted (service/batching.py records it; every door that runs the model goes through the batcher):

- per request answered: `success` (from joining the batcher's queue to its answer, parsing and encoding
  excluded, as Triton times a request from its scheduler on), `inference_count` (its images);
- per request that reached the batcher and got no answer (dropped past the latency budget, or the model call
  failed): `fail`. A request shed at the door (503, queue full) or refused as bad input (400) never reached
  the model and is not counted;
- per model execution (one ONNX Runtime call for a batch): `execution_count` and, under the batch's size in
  images, `batch_stats`; each request in the batch is charged the batch's `compute_*` durations, and its own
  wait in the queue (`queue`), as Triton does;
- `compute_input`: stacking the requests' rows into one array; `compute_infer`: the ONNX Runtime call;
  `compute_output`: activations, labels and the per-request responses.

Plain integers, no lock: the batcher runs every batch on the worker's event loop, one at a time. Each worker
process keeps its own: with MNIST_WORKERS > 1, a request sees the statistics of the worker that answered it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

NS = 1_000_000_000  # nanoseconds in a second: the durations are recorded from time.perf_counter() seconds


@dataclass
class Duration:
    """Triton's $duration_stat: how many times, and their total time in nanoseconds."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += round(seconds * NS)

    def as_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class BatchStats:
    """One batch size's model executions: each compute step's count is the number of executions."""

    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass
class ModelStatistics:
    """The served model's statistics since the worker started; see the module docstring for what each counts."""

    inference_count: int = 0  # images in the requests answered
    execution_count: int = 0  # ONNX Runtime calls
    last_inference_ms: int = 0  # when the last batch ran, in milliseconds since the epoch
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: dict[int, BatchStats] = field(default_factory=dict)  # by images per execution

    def executed(
        self, images: int, requests: int, queued_s: float, input_s: float, infer_s: float, output_s: float
    ) -> None:
        """One model execution of `images` rows from `requests` requests, which waited `queued_s` in all."""
        self.execution_count += 1
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.queue.add(queued_s, requests)
        self.compute_input.add(input_s * requests, requests)
        self.compute_infer.add(infer_s * requests, requests)
        self.compute_output.add(output_s * requests, requests)
        batch = self.batches.get(images)
        if batch is None:
            batch = self.batches[images] = BatchStats()
        batch.compute_input.add(input_s)
        batch.compute_infer.add(infer_s)
        batch.compute_output.add(output_s)

    def answered(self, images: int, seconds: float) -> None:
        self.inference_count += images
        self.success.add(seconds)

    def failed(self, seconds: float) -> None:
        self.fail.add(seconds)

    def as_triton(self, name: str, version: str) -> dict[str, Any]:
        """Triton's $model_stat. `cache_hit`/`cache_miss` stay 0 (there is no response cache), `response_stats`
        is empty (one response per request, nothing decoupled), `memory_usage` is empty (not measured)."""
        inference = {
            "success": self.success,
            "fail": self.fail,
            "queue": self.queue,
            "compute_input": self.compute_input,
            "compute_infer": self.compute_infer,
            "compute_output": self.compute_output,
            "cache_hit": Duration(),
            "cache_miss": Duration(),
        }
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {key: value.as_json() for key, value in inference.items()},
            "response_stats": {},
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": stats.compute_input.as_json(),
                    "compute_infer": stats.compute_infer.as_json(),
                    "compute_output": stats.compute_output.as_json(),
                }
                for size, stats in sorted(self.batches.items())
            ],
            "memory_usage": [],
        }
