"""An uploaded picture (`POST /predict_image`): a multipart form -> a validated request of one image.

The form is parsed here with hard limits (one file named `image`, one optional `activation`, nothing else).
BentoML's own multipart handling answered 500 to a misnamed field, a text field, a form that is not multipart
or a long file name, and fetched a text `image=http://...` as a URL from the server; here no URL is ever
fetched. The picture becomes MNIST's convention in service/codecs/images.py. Its answer is JSON
(service/codecs/rows.py's `encode`).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from anyio import to_thread
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..artifact import INPUT_WIDTH
from ..errors import ClientError, InputError
from ..heads import OUTPUT_ACTIVATIONS
from ..schemas import PixelRequest
from .images import pixels_from_upload

UPLOAD_FIELDS = ("image", "activation")


async def decode(scope: dict[str, Any], body: bytes) -> PixelRequest:
    """The form's picture -> one (1, 784) row; decoding a picture takes milliseconds of CPU, so it runs off the
    event loop, in a thread (as BentoML ran its sync route)."""
    data, activation = await read_upload(scope, body)
    pixels = await to_thread.run_sync(upload_pixels, data)
    return PixelRequest.of(pixels, activation)


def upload_pixels(data: bytes) -> np.ndarray:
    """An uploaded picture's bytes -> one (1, 784) row in MNIST's convention, or ClientError naming `image`."""
    try:
        return pixels_from_upload(data).reshape(1, INPUT_WIDTH)
    except InputError as exc:
        raise ClientError.from_input(exc) from None
    except MemoryError:
        raise ClientError(413, "image: too large to decode; send a smaller picture", "image") from None


async def read_upload(scope: dict[str, Any], body: bytes) -> tuple[bytes, str | None]:
    """The form's file `image` and optional `activation`; anything else is refused, naming the field."""
    request = Request(scope, _body_once(body))
    try:
        form = await request.form(max_files=1, max_fields=1, max_part_size=len(body) + 1)
    except HTTPException as exc:
        raise ClientError(400, f"not a valid multipart form ({exc.detail}); send the file as field 'image'") from None
    except Exception as exc:  # noqa: BLE001 - python-multipart's parser errors on a malformed body
        raise ClientError(
            400, f"not a valid multipart form ({exc.__class__.__name__}); send the file as field 'image'"
        ) from None
    try:
        for name in form:
            if name not in UPLOAD_FIELDS:
                raise ClientError(
                    400, f"{name[:64]!r} is not a field of this form; send the file as 'image'", name[:64]
                )
        image = form.get("image")
        if image is None:
            raise ClientError(400, "image: missing; send the picture as a file in the multipart field 'image'", "image")
        if not isinstance(image, UploadFile):
            raise ClientError(400, "image: must be a file upload; URLs and text are not fetched or read", "image")
        activation = form.get("activation")
        if isinstance(activation, str) and activation.startswith('"'):  # the OpenAPI document's JSON encoding
            activation = json_string(activation)
        if isinstance(activation, UploadFile) or (activation is not None and activation not in OUTPUT_ACTIVATIONS):
            raise ClientError(400, f"activation: must be one of {', '.join(OUTPUT_ACTIVATIONS)}", "activation")
        return await image.read(), activation
    finally:
        await form.close()


def json_string(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def _body_once(body: bytes):  # noqa: ANN202 - an ASGI receive()
    """A receive() that yields `body`, then a disconnect: the form parser reads only what the front read."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
