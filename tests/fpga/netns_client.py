"""The client of the namespace test: runs where the server is reachable (its namespace).

``python -m tests.fpga.netns_client ADDRESS MODEL INPUTS.npy`` sends each row of the
array as one request (input ``input``, output ``logits``) and prints one JSON line a
request: ``{"code": "OK", "logits": [...]}`` or ``{"code": "StatusCode.UNAVAILABLE", "message": ...}``.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def main(address: str, model: str, path: str) -> None:
    with grpcclient.InferenceServerClient(address) as client:
        for x in np.load(path):
            inp = grpcclient.InferInput("input", [1, x.size], "FP32")
            inp.set_data_from_numpy(x.reshape(1, -1).astype(np.float32))
            try:
                out = client.infer(model, [inp]).as_numpy("logits")
                line = {"code": "OK", "logits": out.ravel().tolist()}  # floats print exactly (repr)
            except InferenceServerException as exc:
                line = {"code": exc.status(), "message": exc.message()}
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
