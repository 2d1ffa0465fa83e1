"""Triton Inference Server: a model repository from verified bundles (:mod:`.repository`) and the Python-backend
model that runs a bundle inside Triton (:mod:`.backend`, copied into the repository as ``model.py``)."""
