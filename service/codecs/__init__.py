"""One codec per wire form: a request body -> a validated `PixelRequest` (or InputError / ClientError 400
naming the field), a `PredictResponse` -> the answer's bytes. No batching, no HTTP beyond the body.

- rows.py    JSON rows of 784 floats (`POST /predict`), and the JSON answer every non-v2 door sends;
- npy.py     base64 of raw uint8/float32 bytes or of a .npy file (`POST /predict_bytes`);
- upload.py  a multipart upload of a picture (`POST /predict_image`), with images.py, the picture -> MNIST pipeline;
- v2.py      the Open Inference Protocol's JSON and binary tensors (`POST /v2/models/{name}/infer`);
- pixels.py  the input contract every codec ends with: the shape, the image limit, the [0, 1] range.
"""
