#!/bin/sh
# The GPU machine's half (it has Python, numpy, onnx, PyTorch and NVRTC, no TVM, no network), run
# from the repository root with build/gpu carried there (docs/benchmarks.md, "GPU against cuDNN"):
#   build/gpu/runtime   TVM's runtime for its Python      python -m benchmarks.gpu_runtime build/gpu/runtime
#   build/gpu/bench     the cases and our builds          python -m benchmarks.gpu_vs_cudnn prepare build/gpu/bench
#   build/gpu/rounds/*  exported candidates               tuner tune ... --export-candidates build/gpu/rounds/NAME
# It times our builds against cuDNN first, then every round's candidates (each round for at most
# ROUND_SECONDS, default 150: measure.py keeps what it timed); results go to $OUT (or build/gpu/out).
set -eu
PY="${PYTHON:-python3}"
OUT="${OUT:-build/gpu/out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/build/gpu/runtime:$PWD${PYTHONPATH:+:$PYTHONPATH}" TVM_USE_RUNTIME_LIB=1 PYTHONUNBUFFERED=1
"$PY" -c "import tvm; print('TVM runtime from', tvm.__file__)"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
if [ -f build/gpu/bench/manifest.json ]; then
    "$PY" -m benchmarks.gpu_vs_cudnn run build/gpu/bench --json "$OUT/gpu_vs_cudnn.json" || echo "gpu_vs_cudnn failed"
fi
for round in build/gpu/rounds/*/; do
    [ -f "${round}manifest.json" ] || continue
    timeout "${ROUND_SECONDS:-150}" "$PY" "${round}measure.py" "$round" --timeout 30 || echo "measure.py stopped on $round"
    name=$(basename "$round")
    if [ -f "${round}results.json" ]; then cp "${round}results.json" "$OUT/$name.results.json"; fi
done
