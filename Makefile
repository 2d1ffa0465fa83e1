# medinfer — the two commands that do everything on a fresh machine:
#   make demo   real data → train all models → export with parity gate → verify → predict → summary
#   make test   the test suite (tiny models, sampled data)
#   make bench  the side-by-side latency suite (peers included) → a run folder under build/bench + history + gate
#   make bench-publish  that full run → benchmarks/results/ (suite, cold_start, slice, models), plots, REPORT.md,
#               README numbers; only from a clean, committed tree (commit first)
# Every venv made here holds exactly one onnxruntime build (medinfer's [cpu] extra, or a peer's own build): the
# builds share the module name (tests/docs/test_flavours.py::test_every_venv_of_the_makefile_gets_one_build).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MEDINFER := $(VENV)/bin/medinfer
STAMP  := $(VENV)/.installed-train-dev
MODELS ?= all

.PHONY: demo test install lint clean promises mutation-score bench bench-publish bench-explain bench-edge peer-venvs bench-serve test-triton test-scale test-device check-dicom-out test-arm test-min runs-on

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[cpu,train,dicom,fhir,sign,dev,serve,triton,dask,spark,lifecycle,torch,boost,chem]'
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(MEDINFER) data fetch all
	$(MEDINFER) build $(MODELS) --artifacts artifacts --out bundles
	@# Bring your own model: a MONAI DenseNet (PyTorch) trained on the CT patches, a LightGBM booster on the drug
	@# descriptors, and drug_activity_rf's graph wrapped again as a bare .onnx (docs/bring-your-own-model.md).
	$(PY) -m medinfer.export.bring.examples --size full --out bundles --work artifacts/bring --onnx-from \
	  $$(if [ -d bundles/drug_activity_rf ]; then echo bundles/drug_activity_rf; else echo examples/sample-bundle/gene_expression_svd; fi)
	$(MEDINFER) verify bundles/*/
	@set -e; for b in bundles/*/; do n=$$(basename $$b); \
	  ex=$$(ls artifacts/$$n/example.* 2>/dev/null | head -1); \
	  if [ -n "$$ex" ]; then echo; echo "== medinfer predict $$b $$ex"; $(MEDINFER) predict $$b $$ex; fi; done
	@# Into PACS and EHR: DICOM SR + Parametric Map (+ Secondary Capture) of a real CT slice, FHIR R4 per model.
	@set -e; if [ -d bundles/lung_nodule_cnn ]; then \
	  ct=$$($(PY) -c "from pydicom.data import get_testdata_file; print(get_testdata_file('CT_small.dcm'))"); \
	  echo; echo "== medinfer predict bundles/lung_nodule_cnn CT_small.dcm --dicom-out ... --fhir-out ..."; \
	  $(MEDINFER) predict bundles/lung_nodule_cnn $$ct --dicom-out artifacts/lung_nodule_cnn/dicom --dicom-sc \
	    --fhir-out artifacts/lung_nodule_cnn/fhir.json --fhir-subject Patient/example --json >/dev/null; \
	  ls -1 artifacts/lung_nodule_cnn/dicom/*.dcm artifacts/lung_nodule_cnn/fhir.json; \
	  if command -v dciodvfy >/dev/null; then $(PY) scripts/check_dicom_out.py artifacts/lung_nodule_cnn/dicom; fi; fi
	@# Raw inputs: a CGM/pump export and SMILES, featurised on the device by the functions training uses.
	@set -e; if [ -d bundles/glucose_lstm ]; then echo; echo "== medinfer predict bundles/glucose_lstm examples/glucose_lstm_cgm.csv"; \
	  $(MEDINFER) predict bundles/glucose_lstm examples/glucose_lstm_cgm.csv; fi
	@set -e; if [ -d bundles/drug_activity_rf ]; then echo; echo "== medinfer predict bundles/drug_activity_rf examples/drug_activity_rf.smi"; \
	  $(MEDINFER) predict bundles/drug_activity_rf examples/drug_activity_rf.smi; fi
	@set -e; for n in clinical_notes_tfidf glucose_lstm gene_expression_svd; do \
	  ex=$$(ls artifacts/$$n/example.* 2>/dev/null | head -1); \
	  if [ -d bundles/$$n ] && [ -n "$$ex" ]; then $(MEDINFER) predict bundles/$$n $$ex \
	    --fhir-out artifacts/$$n/fhir.json --fhir-subject Patient/example --json >/dev/null; \
	    echo "FHIR R4 of $$n ($$ex): artifacts/$$n/fhir.json"; fi; done
	@echo; $(MEDINFER) list bundles
	@echo; $(MEDINFER) bench bundles/*/ --min-queries 300 --min-seconds 1 --warmup 20

# The full published run: every bundle in bundles/ (artifacts/ for the native side and the held-out accuracy),
# batch 1 and 64, 6 s x 12 rounds each, LiteRT and OpenVINO in their own venvs, cold starts, and a CT slice in one
# pass vs patch by patch (256/512 px, 20 s x 3 rounds each) for the CNN (about 35-40 minutes on 2 cores).
# It writes build/bench/<time>-<cpu>/ and never touches the committed report; bench-publish copies the newest
# full run into the repo (results/suite.json, cold_start.json, slice.json, models.json, plots, REPORT.md, README).
# BENCH_ARGS e.g. --models drug_activity_rf --seconds 0.5 --rounds 2 (a short run: gated, never published).
bench: $(STAMP) peer-venvs
	$(PY) -m benchmarks run --check $(BENCH_ARGS)

# Refused (exit 2, "commit first") on a tree with uncommitted changes, and for a run that started on one or whose
# commit is not in HEAD's history: commit, then `make bench`, then `make bench-publish`, then commit the results.
bench-publish: $(STAMP)
	$(PY) -m benchmarks publish --bundles bundles --from $$(ls -d build/bench/*/ | grep -v -- -short/ | tail -1)

# Explanations of the built bundles: batch-1 cost and fidelity -> benchmarks/results/explain.json and
# benchmarks/plots/explain_fidelity.png; one explanation per model into README (between its explain-examples markers).
bench-explain: $(STAMP)
	$(PY) -m benchmarks explain --bundles bundles
	$(PY) -m benchmarks explain --bundles bundles --examples --write-readme

# Issue 30's measurements on this CPU (after `make demo` or `medinfer build`; run from a clean, committed tree on a
# quiet machine: each writes its results file): the CNN's int8 options vs LiteRT / OpenVINO with the AUC of each, the
# small models' tails per thread/spinning setting, the compiled-tree contender, the int8 CNN op by op.
bench-edge: $(STAMP) peer-venvs
	$(PY) -m pip install --quiet -e '.[trees]'
	$(PY) -m benchmarks cnn-int8 --bundle bundles/lung_nodule_cnn --artifacts artifacts
	$(PY) -m benchmarks tails --bundles bundles
	$(PY) -m benchmarks trees --bundle bundles/drug_activity_rf --artifacts artifacts
	$(PY) -m benchmarks int8-ops --bundle bundles/lung_nodule_cnn --threads 1

# The edge peers, each in its own venv (never beside plain onnxruntime): ai-edge-litert, onnxruntime-openvino.
LITERT_VENV ?= build/litert-venv
OPENVINO_VENV ?= build/openvino-venv
$(LITERT_VENV)/.installed:
	$(PYTHON) -m venv $(LITERT_VENV)
	$(LITERT_VENV)/bin/python -m pip install --quiet 'ai-edge-litert==2.3.0' numpy
	@touch $@
$(OPENVINO_VENV)/.installed:
	$(PYTHON) -m venv $(OPENVINO_VENV)
	$(OPENVINO_VENV)/bin/python -m pip install --quiet 'onnxruntime-openvino==1.24.1' numpy
	@touch $@
peer-venvs: $(LITERT_VENV)/.installed $(OPENVINO_VENV)/.installed

# The whole suite: lint and the import contracts, the tests with every extra (on TEST_PROCESSES processes, one test
# file per process at a time: module fixtures such as a running server stay in one process), then the device-only
# run. Under qemu, `make test` runs the device core's own tests (tests/runtime: the numerics that differ by
# architecture; tools, cli and serve are the same Python on both): `make test-arm` and `make runs-on` run them all.
TEST_PROCESSES ?= 2
# dciodvfy (Debian's dicom3tools, unpacked into build/ without root by scripts/dicom3tools.py) is on PATH so that
# tests/tools/test_dicom_out.py validates the DICOM outputs (MEDINFER_SKIP_DCIODVFY=1 skips that, explicitly).
# The promise table and the mutation score are checked against their committed results (make promises and
# make mutation-score run them: hours of CPU).
DICOM3TOOLS = build/dicom3tools/root/usr/bin
test: $(STAMP)
	$(VENV)/bin/ruff check runtime train export tests benchmarks scripts examples promises
	$(VENV)/bin/mypy
	$(PY) scripts/dicom3tools.py
	PATH="$(CURDIR)/$(DICOM3TOOLS):$$PATH" $(PY) -m pytest -q --durations=15 -n $(TEST_PROCESSES) --dist loadfile
	$(MAKE) --no-print-directory test-device
	$(MAKE) --no-print-directory test-min EDGE_IF_ABLE=--if-able
	$(MAKE) --no-print-directory test-arm EDGE_IF_ABLE=--if-able EDGE_TESTS=core

# The device install (`pip install '.[cpu,dev]'`: numpy + onnxruntime + test tools, NO [train] or other extras) in
# its own venv, running the tests that need nothing more. A built wheel, not an editable install: it also proves the
# package list in pyproject.toml is complete.
DEVICE_VENV ?= build/device-venv
$(DEVICE_VENV)/.deps: pyproject.toml
	rm -rf $(DEVICE_VENV)
	$(PYTHON) -m venv $(DEVICE_VENV)
	$(DEVICE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DEVICE_VENV)/bin/python -m pip install --quiet '.[cpu,dev]'
	@touch $@

test-device: $(DEVICE_VENV)/.deps
	$(DEVICE_VENV)/bin/python -m pip install --quiet --no-deps --force-reinstall .
	MEDINFER_DEVICE_ONLY=1 $(DEVICE_VENV)/bin/python -m pytest -q -p no:cacheprovider \
	  -m "not train and not triton and not scale" tests/runtime tests/tools tests/cli tests/fleet tests/lifecycle

# Edge evidence (scripts/edge_check.py; each run writes its row of benchmarks/results/runs_on.json, the data of
# README's "Runs on" table). test-min: the device tests and the test bundles in build/min-venv, which holds the
# lower bounds of pyproject's dependencies. test-arm: the same on aarch64 under qemu-user (Debian's arm64 python3.11
# and aarch64 wheels, cached in build/arm; apt and pip only), every bundle output compared with x86-64.
# `make test` passes --if-able: a machine that cannot (not Debian, no apt) prints one line saying why.
ARM_ONNXRUNTIME ?=
ARM_QEMU ?= backports
EDGE_TESTS ?= full
test-min: $(STAMP)
	$(PY) scripts/edge_check.py min --tests $(EDGE_TESTS) $(EDGE_IF_ABLE)

test-arm: $(STAMP)
	$(PY) scripts/edge_check.py arm --qemu $(ARM_QEMU) --tests $(EDGE_TESTS) \
	  $(if $(ARM_ONNXRUNTIME),--onnxruntime $(ARM_ONNXRUNTIME)) $(EDGE_IF_ABLE)

# The runs behind README's "Runs on" table: each --record (refused on a tree with uncommitted changes) keeps its row
# with the commit and date it started at in build/edge/recorded/; `edge_check.py publish` puts them into
# benchmarks/results/runs_on.json and rewrites the table. Debian 12's own qemu-user 7.2 crashes onnxruntime >= 1.28 at import:
# recorded, not fatal. build/sample/bundles: the five specs trained on their test samples (scripts/sample_bundles.py).
runs-on: $(STAMP)
	$(PY) scripts/edge_check.py min --record
	$(PY) scripts/edge_check.py arm --record
	$(PY) scripts/edge_check.py arm --onnxruntime 1.18.0 --record
	$(PY) scripts/edge_check.py arm --qemu bookworm --onnxruntime 1.27.0 --tests none --record
	-$(PY) scripts/edge_check.py arm --qemu bookworm --onnxruntime 1.28.0 --tests none --record
	-$(PY) scripts/edge_check.py arm --qemu bookworm --tests none --record
	$(PY) scripts/sample_bundles.py build/sample/bundles
	$(PY) scripts/edge_check.py min --tests none --bundles build/sample/bundles --record
	$(PY) scripts/edge_check.py arm --tests none --bundles build/sample/bundles --record
	$(PY) scripts/edge_check.py arm --onnxruntime 1.18.0 --tests none --bundles build/sample/bundles --record
	$(PY) scripts/edge_check.py publish

# The real tritonserver (PyTriton's wheel: Python backend only) in its own venv, because its backend stub is
# built against numpy 1 (numpy 2 hands it empty tensors); medinfer is installed there without dependencies.
TRITON_VENV ?= build/triton-venv
$(TRITON_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet 'nvidia-pytriton>=0.7' 'onnxruntime>=1.18'
	$(TRITON_VENV)/bin/python -m pip install --quiet --no-deps -e .
	@touch $@

test-triton: $(STAMP) $(TRITON_VENV)/.installed
	MEDINFER_TRITON_VENV=$(TRITON_VENV) $(PY) -m pytest -q -m triton tests/fleet/test_triton.py

# medinfer serve (before/after issue 17, audit on/off), MLServer 1.7.1 and PyTriton's tritonserver side by side on
# the bundles in bundles/ -> benchmarks/results/serve.json and REPORT.md. MLServer gets its own venv (uvloop 0.21:
# 0.23 crashes its parallel workers). SERVE_ARGS e.g. --models drug_activity_rf --seconds 1 --rounds 1
MLSERVER_VENV ?= build/mlserver-venv
$(MLSERVER_VENV)/.installed:
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/python -m pip install --quiet 'mlserver==1.7.1' 'uvloop==0.21.0' onnxruntime numpy
	@touch $@

bench-serve: $(STAMP) $(TRITON_VENV)/.installed $(MLSERVER_VENV)/.installed
	$(PY) -m benchmarks serve $(SERVE_ARGS)

# >= 1 M rows through the local, Dask and Spark engines -> benchmarks/results/scale.json
test-scale: $(STAMP)
	$(PY) -m pytest -q -s -m scale tests/fleet/test_score.py

# dciodvfy (Debian's dicom3tools, unpacked into build/ if missing) on the DICOM outputs: those of the tiny CT model on
# pydicom's CT_small.dcm (tests/tools/test_dicom_out.py) and the demo's, when `make demo` made them. Zero errors.
check-dicom-out: $(STAMP)
	$(PY) scripts/dicom3tools.py
	PATH="$(CURDIR)/$(DICOM3TOOLS):$$PATH" $(PY) -m pytest -q -p no:cacheprovider tests/tools/test_dicom_out.py -k dciodvfy
	@if [ -d artifacts/lung_nodule_cnn/dicom ]; then PATH="$(CURDIR)/$(DICOM3TOOLS):$$PATH" \
	  $(PY) scripts/check_dicom_out.py artifacts/lung_nodule_cnn/dicom; \
	  else echo "no artifacts/lung_nodule_cnn/dicom (make demo writes it): checked the test outputs only"; fi

# Every SECURITY.md row and README promise that cites a test, proven by a mutation (promises/catalogue.toml): the
# mechanism removed on a copy of the tree, the cited tests must fail there and pass here. Results in
# promises/results.json and SECURITY.md; tests/docs/test_promise_catalogue.py (make test) checks them against the
# current tree. About 1-2 h on 2 cores (the spec tests train their models on the samples). ONLY=id1,id2 for some.
promises: $(STAMP)
	$(PY) -m promises run $(if $(ONLY),--only $(ONLY))

# mutmut over the security-relevant device core (promises/mutation.toml: each module and the device tests run
# against it) -> promises/mutation.json and SECURITY.md. Hours of CPU (nice 19); ONLY=runtime/audit.py for one.
mutation-score: $(STAMP)
	$(PY) -m promises.mutation run $(if $(ONLY),--only $(ONLY))

lint: $(STAMP)
	$(VENV)/bin/ruff check runtime train export tests benchmarks scripts examples promises
	$(VENV)/bin/mypy
	$(PY) scripts/lint_imports.py

clean:
	rm -rf artifacts bundles .pytest_cache
