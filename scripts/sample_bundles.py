"""Train every registered spec on its small test sample and export it: the five model families as bundles in minutes.

The same recipe as the tests' ``built`` fixture (``spec.test_sample`` records, ``spec.test_options``), written to a
folder that ``scripts/edge_check.py --bundles DIR`` checks on aarch64 and on the oldest versions: real graphs of
every converter family (TF-IDF strings, trees, SVD, LSTM, CNN) without waiting for ``make demo``. Needs [train].

    .venv/bin/python scripts/sample_bundles.py build/sample/bundles
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from medinfer.export.bundle import export
    from medinfer.train import artifact, registry

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="bundle folder (its parent also gets artifacts/)")
    args = parser.parse_args(argv)
    for name in registry.names():
        start = time.perf_counter()
        spec = registry.get(name)
        art = artifact.train(name, args.out.parent / "artifacts", sample=spec.test_sample, **spec.test_options)
        path = export(art, args.out)
        print(f"{name}: {path} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
