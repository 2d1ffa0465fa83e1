"""The Python example of README's first screen: load the sample bundle, predict five held-out cells.

    python examples/predict.py
"""

import medinfer
import numpy as np

model = medinfer.load("examples/sample-bundle/gene_expression_svd")  # checks every file's sha256 and self-tests
x = np.load("examples/gene_expression_svd.npy")  # 5 cells x 765 genes (float32, the manifest's gene order)
pred = model.predict(x)
for label, p in zip(pred.labels, pred.scores.max(axis=1)):
    print(f"{label:<32} {p:.2f}")
print(f"{pred.model} {pred.version}, sha256 {pred.model_sha256[:12]}…, on {pred.provider}")
