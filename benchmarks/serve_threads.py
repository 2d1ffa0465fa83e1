"""``medinfer serve`` with an explicit intra-op thread count, for the serve benchmark (today's and the baseline's).

    python benchmarks/serve_threads.py N serve BUNDLE --port 0 ...

Every ``medinfer.load`` in that process gets ``session_profile={"intra_op_num_threads": N}`` (a public option of
``load``, for both of its sessions) unless the call names a profile itself; then ``medinfer`` runs as its own
``python -m medinfer``. The same wrapper serves the baseline tree (``git archive`` of an older runtime), whose
``serve`` has no thread option, so both medinfer servers run with the threads every other server gets.
"""

from __future__ import annotations

import functools
import runpy
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def install(threads: int) -> Any:
    """Make ``medinfer.loader.load`` (and ``medinfer.load``) use ``threads`` intra-op threads; returns the
    original ``load``."""
    import medinfer
    import medinfer.loader as loader

    original = loader.load

    @functools.wraps(original)
    def load(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("session_profile") is None:
            kwargs["session_profile"] = {"intra_op_num_threads": threads}
        return original(*args, **kwargs)

    loader.load = load
    medinfer.load = load
    return original


def main(argv: list[str]) -> None:
    # run as a script, this file's folder leads sys.path: the benchmark modules must not shadow any other
    sys.path[:] = [p for p in sys.path if not (p and Path(p).resolve() == HERE)]
    threads, rest = int(argv[0]), argv[1:]
    install(threads)
    sys.argv = ["medinfer", *rest]
    runpy.run_module("medinfer", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
