# medinfer — the two commands that do everything on a fresh machine:
#   make demo   real data → train all models → export with parity gate → verify → predict → summary
#   make test   the test suite (tiny models, sampled data)
#   make bench  the side-by-side latency suite → benchmarks/REPORT.md + history + regression check
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MEDINFER := $(VENV)/bin/medinfer
STAMP  := $(VENV)/.installed-train-dev
MODELS ?= all

.PHONY: demo test install lint clean bench test-triton test-scale test-device

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[train,dicom,sign,dev,serve,triton,dask,spark]'
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(MEDINFER) data fetch all
	$(MEDINFER) build $(MODELS) --artifacts artifacts --out bundles
	$(MEDINFER) verify bundles/*/
	@set -e; for b in bundles/*/; do n=$$(basename $$b); \
	  ex=$$(ls artifacts/$$n/example.* 2>/dev/null | head -1); \
	  if [ -n "$$ex" ]; then echo; echo "== medinfer predict $$b $$ex"; $(MEDINFER) predict $$b $$ex; fi; done
	@echo; $(MEDINFER) list bundles
	@echo; $(MEDINFER) bench bundles/*/ --min-queries 300 --min-seconds 1 --warmup 20

bench: $(STAMP)
	$(PY) -m benchmarks run --check

# The whole suite: lint and the import contracts, the tests with every extra, then the device-only run.
test: $(STAMP)
	$(VENV)/bin/ruff check runtime train export tests benchmarks scripts
	$(VENV)/bin/mypy
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory test-device

# The device install (`pip install .[dev]`: numpy + onnxruntime + test tools, NO [train] or other extras) in its
# own venv, running the tests that need nothing more. A built wheel, not an editable install: it also proves the
# package list in pyproject.toml is complete.
DEVICE_VENV ?= build/device-venv
$(DEVICE_VENV)/.deps: pyproject.toml
	rm -rf $(DEVICE_VENV)
	$(PYTHON) -m venv $(DEVICE_VENV)
	$(DEVICE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DEVICE_VENV)/bin/python -m pip install --quiet '.[dev]'
	@touch $@

test-device: $(DEVICE_VENV)/.deps
	$(DEVICE_VENV)/bin/python -m pip install --quiet --no-deps --force-reinstall .
	MEDINFER_DEVICE_ONLY=1 $(DEVICE_VENV)/bin/python -m pytest -q -p no:cacheprovider \
	  -m "not train and not triton and not scale" tests/runtime tests/fleet

# The real tritonserver (PyTriton's wheel: Python backend only) in its own venv, because its backend stub is
# built against numpy 1 (numpy 2 hands it empty tensors); medinfer is installed there without dependencies.
TRITON_VENV ?= build/triton-venv
$(TRITON_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet 'nvidia-pytriton>=0.7' 'onnxruntime>=1.18'
	$(TRITON_VENV)/bin/python -m pip install --quiet --no-deps -e .
	@touch $@

test-triton: $(STAMP) $(TRITON_VENV)/.installed
	MEDINFER_TRITON_VENV=$(TRITON_VENV) $(PY) -m pytest -q -m triton tests/test_triton.py

# >= 1 M rows through the local, Dask and Spark engines -> benchmarks/results/scale.json
test-scale: $(STAMP)
	$(PY) -m pytest -q -s -m scale tests/test_score.py

lint: $(STAMP)
	$(VENV)/bin/ruff check runtime train export tests benchmarks scripts
	$(VENV)/bin/mypy
	$(PY) scripts/lint_imports.py

clean:
	rm -rf artifacts bundles .pytest_cache
