"""Locust scenarios against the service; every response is checked, and a wrong answer is a failure: one that is
malformed or inconsistent, or that labels more of its digits wrongly than payloads.WRONG_ALLOWED (none of 1-9).
At the end each Locust process logs its accuracy: the share of digits answered with their true label.

    locust -f loadtests/locustfile.py --config loadtests/locust.conf JsonOneImageUser
    locust -f loadtests/locustfile.py --config loadtests/locust.conf BytesBatchUser --host http://127.0.0.1:3000
    python -m loadtests.run --scenario json-1            # starts the service, warms up, writes a report

User classes: JsonOneImageUser (1 image per JSON request), JsonBatchUser (16 / 64 / 256 images per JSON
request), BytesBatchUser (256 images per request through /predict_bytes), V2BinaryUser (256 images per
Open Inference Protocol request, binary tensors), ImageUploadUser (PNG uploads).
Bodies are real MNIST test digits from loadtests/data/mnist_sample.npz, encoded once at start.
"""

from __future__ import annotations

import logging

from locust import FastHttpUser, events, task

from loadtests.payloads import Payloads, Request, check_response, read_answer, right_digits

DIGITS = {"answered": 0, "right": 0}  # this process's digits with a true label, and those answered right


@events.test_stop.add_listener
def log_accuracy(**_kwargs: object) -> None:
    answered, right = DIGITS["answered"], DIGITS["right"]
    share = f"{right / answered:.4f}" if answered else "n/a"
    logging.getLogger("loadtests").info("accuracy: %s (%d of %d digits right)", share, right, answered)


class CheckedUser(FastHttpUser):
    abstract = True
    scenario = "json-1"

    def on_start(self) -> None:
        self.payloads = Payloads.load(self.scenario)

    def send(self, request: Request, name: str | None = None) -> None:
        with self.client.post(
            request.path,
            data=request.body,
            headers=request.headers,
            name=name or request.path,
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
                return
            answer = read_answer(resp.content, resp.headers)
            problem = answer if isinstance(answer, str) else check_response(answer, request)
            if not isinstance(answer, str) and request.digits:
                DIGITS["answered"] += len(request.digits)
                DIGITS["right"] += right_digits(answer, request)
            if problem:
                resp.failure(problem)
            else:
                resp.success()


class JsonOneImageUser(CheckedUser):
    scenario = "json-1"

    @task
    def predict_one(self) -> None:
        self.send(self.payloads.next())


class JsonBatchUser(CheckedUser):
    def on_start(self) -> None:
        self.pools = {n: Payloads.load(f"json-{n}") for n in (16, 64, 256)}

    @task(4)
    def predict_16(self) -> None:
        self.send(self.pools[16].next(), "/predict [16 images]")

    @task(2)
    def predict_64(self) -> None:
        self.send(self.pools[64].next(), "/predict [64 images]")

    @task(1)
    def predict_256(self) -> None:
        self.send(self.pools[256].next(), "/predict [256 images]")


class BytesBatchUser(CheckedUser):
    scenario = "bytes-256"

    @task
    def predict_bytes(self) -> None:
        self.send(self.payloads.next(), "/predict_bytes [256 images]")


class V2BinaryUser(CheckedUser):
    """The Open Inference Protocol with binary tensors: 256 uint8 images in, probabilities and labels out."""

    scenario = "v2-256"

    @task
    def infer(self) -> None:
        self.send(self.payloads.next(), "/v2/models/default/infer [256 images]")


class ImageUploadUser(CheckedUser):
    scenario = "image"

    @task
    def predict_image(self) -> None:
        self.send(self.payloads.next())
