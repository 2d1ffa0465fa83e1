"""Ask a running ``medinfer serve`` for predictions with NVIDIA's Triton client over HTTP (the Open Inference
Protocol, KServe v2): the same client code talks to a Triton Inference Server.

    medinfer serve examples/sample-bundle/gene_expression_svd --port 8000 &
    python examples/triton_client.py localhost:8000 gene_expression_svd examples/gene_expression_svd.npy

Needs tritonclient[http] on the client (pip install 'medinfer[triton]'); the server needs [serve].
"""

from __future__ import annotations

import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import triton_to_np_dtype


def main(url: str, model: str, path: str) -> int:
    client = httpclient.InferenceServerClient(url)
    if not client.is_model_ready(model):
        print(f"{model} is not ready on {url}", file=sys.stderr)
        return 10
    meta = client.get_model_metadata(model)  # names, datatypes and shapes of the inputs and outputs
    spec = meta["inputs"][0]
    x = np.load(path).astype(triton_to_np_dtype(spec["datatype"]))
    request = httpclient.InferInput(spec["name"], list(x.shape), spec["datatype"])
    request.set_data_from_numpy(x)
    result = client.infer(model, [request])
    labels = result.as_numpy("labels")
    scores = result.as_numpy("scores")
    for label, score in zip(labels.reshape(-1), scores.reshape(len(x), -1).max(axis=1)):
        print(f"{label.decode() if isinstance(label, bytes) else label:<32} {score:.2f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print("usage: python examples/triton_client.py HOST:PORT MODEL INPUT.npy", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
