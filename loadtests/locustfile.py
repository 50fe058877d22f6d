"""Locust scenarios against the service; every response is checked, and a wrong answer is a failure.

    locust -f loadtests/locustfile.py --config loadtests/locust.conf JsonOneImageUser
    locust -f loadtests/locustfile.py --config loadtests/locust.conf BytesBatchUser --host http://127.0.0.1:3000
    python -m loadtests.run --scenario json-1            # starts the service, warms up, writes a report

User classes: JsonOneImageUser (1 image per JSON request), JsonBatchUser (16 / 64 / 256 images per JSON
request), BytesBatchUser (256 images per request through /predict_bytes), V2BinaryUser (256 images per
Open Inference Protocol request, binary tensors), ImageUploadUser (PNG uploads).
Bodies are real MNIST test digits from loadtests/data/mnist_sample.npz, encoded once at start.
"""

from __future__ import annotations

from locust import FastHttpUser, task

from loadtests.payloads import Payloads, Request, check_answer


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
            problem = check_answer(resp.content, resp.headers, request)
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
