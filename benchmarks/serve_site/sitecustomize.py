"""The serve benchmark's thread count in every medinfer process of ``medinfer serve --workers N`` (each worker is a
new interpreter, so the wrapper of :mod:`benchmarks.serve_threads` cannot reach it): on this folder's
``PYTHONPATH`` with ``MEDINFER_BENCH_THREADS`` set, ``medinfer.load`` gets that many intra-op threads, as every
other server of the benchmark does. Nothing else imports this file."""

import functools
import os

_THREADS = os.environ.get("MEDINFER_BENCH_THREADS")

if _THREADS:
    import importlib.abc
    import sys

    class _Patch(importlib.abc.MetaPathFinder):
        """Wrap ``medinfer.loader.load`` once ``medinfer`` has been imported (only then: startup stays as it is)."""

        def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201 - the finder protocol
            if name == "medinfer.loader":
                sys.meta_path.remove(self)
                spec = importlib.util.find_spec(name)
                original = spec.loader.exec_module

                def exec_module(module):  # noqa: ANN001, ANN202
                    original(module)
                    load = module.load

                    @functools.wraps(load)
                    def threaded(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                        if kwargs.get("session_profile") is None:
                            kwargs["session_profile"] = {"intra_op_num_threads": int(_THREADS)}
                        return load(*args, **kwargs)

                    module.load = threaded
                spec.loader.exec_module = exec_module
                return spec
            return None

    import importlib.util

    sys.meta_path.insert(0, _Patch())
