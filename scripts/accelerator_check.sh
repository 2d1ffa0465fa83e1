#!/usr/bin/env bash
# Run every bundle on CUDA and TensorRT (onnxruntime-gpu), compare with the CPU provider within each bundle's
# tolerance, and benchmark each provider at batch 1 and a large batch. Writes JSON (default
# benchmarks/results/accelerator.json, which `python -m benchmarks report` renders into REPORT.md).
#
# It builds its OWN throw-away venv with onnxruntime-gpu INSTEAD of onnxruntime (the two builds provide the same
# `onnxruntime` module and must never share an environment), and runs the medinfer runtime from this checkout.
#
#   scripts/accelerator_check.sh                         # online: pip install onnxruntime-gpu[cuda,cudnn] numpy
#   scripts/accelerator_check.sh --wheels DIR            # offline: wheels in DIR
#   scripts/accelerator_check.sh --site-tar 'A B ...'    # offline: tarballs of unpacked wheels (air-gapped boxes)
#   options: --bundles DIR  --out FILE  --providers "cuda tensorrt"  --batch "1 256"  --seconds S
#            --cuda-libs-from PYTHON   (add that interpreter's nvidia/*/lib pip folders to LD_LIBRARY_PATH)
# Without an NVIDIA GPU it says so and exits 0 (nothing to check).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BUNDLES="$REPO/bundles"
OUT="$REPO/benchmarks/results/accelerator.json"
PROVIDERS="cuda tensorrt"
BATCH="1 256"
SECONDS_PER=2
WHEELS=""
SITE_TAR=""
CUDA_LIBS_FROM=""
PY="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
  case "$1" in
    --bundles) BUNDLES="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --providers) PROVIDERS="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --seconds) SECONDS_PER="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --site-tar) SITE_TAR="$2"; shift 2 ;;
    --cuda-libs-from) CUDA_LIBS_FROM="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "accelerator_check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "accelerator_check: no NVIDIA GPU visible here (nvidia-smi is missing or finds no device): nothing to check."
  exit 0
fi
GPU="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
echo "accelerator_check: GPU $GPU"
if ! ls "$BUNDLES"/*/manifest.json >/dev/null 2>&1; then
  echo "accelerator_check: no bundles in $BUNDLES (run 'make demo' first)" >&2
  exit 2
fi

WORK="$(mktemp -d /tmp/medinfer-accel.XXXXXX)"
START=$(date +%s)
if [ -n "$SITE_TAR" ]; then "$PY" -m venv --without-pip "$WORK/venv"; else "$PY" -m venv "$WORK/venv"; fi
VPY="$WORK/venv/bin/python"
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ -n "$SITE_TAR" ]; then
  for t in $SITE_TAR; do tar -xf "$t" -C "$SITE"; done
elif [ -n "$WHEELS" ]; then
  "$VPY" -m pip install -q --no-index --find-links "$WHEELS" onnxruntime-gpu numpy
else
  "$VPY" -m pip install -q "onnxruntime-gpu[cuda,cudnn]" numpy
fi
echo "accelerator_check: environment ready in $(( $(date +%s) - START )) s"

# CUDA / cuDNN libraries from pip's nvidia-* packages (this venv's, or another interpreter's).
LIBS=""
for site in "$SITE" ${CUDA_LIBS_FROM:+$("$CUDA_LIBS_FROM" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')}; do
  for d in "$site"/nvidia/*/lib; do [ -d "$d" ] && LIBS="$LIBS:$d"; done
done
export LD_LIBRARY_PATH="${LIBS#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# The medinfer runtime from this checkout, importable as `medinfer` (runtime/ is the package folder).
mkdir -p "$WORK/pkgs" "$(dirname "$OUT")"
ln -s "$REPO/runtime" "$WORK/pkgs/medinfer"
cd "$REPO"
PYTHONPATH="$WORK/pkgs" "$VPY" -c 'import medinfer, onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())'
# shellcheck disable=SC2086
PYTHONPATH="$WORK/pkgs:$REPO" "$VPY" "$REPO/benchmarks/accelerator.py" --bundles "$BUNDLES" --out "$OUT" \
  --providers $PROVIDERS --batch $BATCH --seconds "$SECONDS_PER" --gpu "$GPU" --cache "$WORK/trt-cache"
echo "accelerator_check: wrote $OUT in $(( $(date +%s) - START )) s"
