#!/usr/bin/env bash
# README's first screen, run as written: from a clone to predictions on a device install (numpy + onnxruntime),
# with the sample bundle and inputs in examples/. tests/docs/test_first_screen.py runs this file and times it.
set -euo pipefail
python3 -m venv .venv-device && . .venv-device/bin/activate
pip wheel --no-deps . -w dist            # medinfer is on no package index: build its wheel ...
pip install dist/medinfer-*.whl          # ... install it (numpy) ...
pip install 'medinfer[cpu]'              # ... with ONE onnxruntime build ([gpu] or [openvino] instead)
medinfer verify examples/sample-bundle/gene_expression_svd
medinfer predict examples/sample-bundle/gene_expression_svd examples/gene_expression_svd.csv --id-column cell
python examples/predict.py
