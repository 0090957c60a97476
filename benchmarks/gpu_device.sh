#!/bin/sh
# The GPU machine's half (it has Python, numpy, PyTorch and NVRTC, no TVM, no network), run from the
# repository root with build/gpu carried there (docs/benchmarks.md, "GPU against cuDNN"):
#   build/gpu/runtime   TVM's runtime for its Python      python -m benchmarks.gpu_runtime build/gpu/runtime
#   build/gpu/rounds/*  exported candidates               tuner tune ... --export-candidates build/gpu/rounds/NAME
#   build/gpu/bench     the cases and our builds          python -m benchmarks.gpu_vs_cudnn prepare build/gpu/bench
# It times every round's candidates, then our builds against cuDNN; results go to $OUT (or build/gpu/out).
set -eu
PY="${PYTHON:-python3}"
OUT="${OUT:-build/gpu/out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/build/gpu/runtime:$PWD${PYTHONPATH:+:$PYTHONPATH}" TVM_USE_RUNTIME_LIB=1
"$PY" -c "import tvm; print('TVM runtime from', tvm.__file__)"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
for round in build/gpu/rounds/*/; do
    [ -f "${round}manifest.json" ] || continue
    "$PY" "${round}measure.py" "$round" --timeout 30 || echo "measure.py failed on $round"
    name=$(basename "$round")
    [ -f "${round}results.json" ] && cp "${round}results.json" "$OUT/$name.results.json"
done
if [ -f build/gpu/bench/manifest.json ]; then
    "$PY" -m benchmarks.gpu_vs_cudnn run build/gpu/bench --json "$OUT/gpu_vs_cudnn.json"
fi
