"""MLServer custom runtime for the side-by-side serve benchmark: a bundle's default graph in onnxruntime with the
bundle's measured session options (runs inside build/mlserver-venv; no medinfer, no validation, no audit)."""

import json
import os

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxBundle(MLModel):
    async def load(self) -> bool:
        folder = self.settings.parameters.uri
        with open(os.path.join(folder, "manifest.json")) as fh:
            manifest = json.load(fh)
        profile = manifest.get("profile", {})
        options = ort.SessionOptions()
        options.intra_op_num_threads = profile.get("intra_op_num_threads", 0)
        options.inter_op_num_threads = profile.get("inter_op_num_threads", 0)
        spin = "1" if profile.get("allow_spinning", True) else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        graph = os.path.join(folder, manifest["variants"]["default"]["file"])
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
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
