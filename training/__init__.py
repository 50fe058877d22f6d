"""Training side of mnist-serve: data, model, training loop and export to `models/`.

Never imported by `service/`: the contract between the two is `models/<name>/metadata.json`, defined in
`service/artifact.py`, the one service module training imports (for the file hash and the device names).
"""
