"""MLServer custom runtime for the side-by-side serve benchmark: a bundle's default graph in a bare onnxruntime
session (runs inside build/mlserver-venv; no medinfer, no validation, no audit). Its session options are the
description the benchmark wrote into ``model-settings.json`` (``parameters.extra.session_options``: medinfer's rule
at the run's thread count, :func:`benchmarks.triton_bare.bare_options`), applied by bare_session.py beside it."""

import json
import os

import bare_session
import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxBundle(MLModel):
    async def load(self) -> bool:
        folder = self.settings.parameters.uri
        with open(os.path.join(folder, "manifest.json")) as fh:
            manifest = json.load(fh)
        spec = (self.settings.parameters.extra or {})["session_options"]
        graph = os.path.join(folder, manifest["variants"]["default"]["file"])
        self.session = bare_session.session(graph, spec)
        self.names = [o.name for o in self.session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {}
        for item in payload.inputs:
            x = NumpyCodec.decode_input(item)
            if x.dtype == object:  # BYTES: onnxruntime takes str
                x = np.array([v.decode() if isinstance(v, bytes) else v for v in x.reshape(-1)], dtype=object) \
                    .reshape(x.shape)
            feeds[item.name] = x
        outputs = self.session.run(self.names, feeds)
        return InferenceResponse(model_name=self.name, outputs=[
            NumpyCodec.encode_output(name, value) for name, value in zip(self.names, outputs)])
