"""medinfer.export: ONNX conversion, the fail-closed parity gate and the bundle writer ([train] extra)."""
