"""Beyond one device: serving over the Open Inference Protocol, micro-batching, Triton repositories, batch scoring.

Optional (extras [serve], [triton], [score], [dask], [spark]); the core never imports this package, and every
module here uses only the core's public names (``Model.prepare``, ``Prediction.split``,
``medinfer.request_groups.predict_grouped``, ...).
"""
