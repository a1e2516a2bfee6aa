#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, as one script: the engine's GPU tests and the GPU
# benchmark. Run from the repository root on a machine with CuPy and PyTorch:
#   OUT=/tmp/gpu bash benchmarks/gpu_checks.sh
set -u
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/gpu-checks}"
mkdir -p "$OUT"
nvidia-smi -L
python3 -c "import cupy, numba, ml_dtypes, sklearn, yaml, torch; print('cupy', cupy.__version__, 'numba', numba.__version__, 'torch', torch.__version__)"
python3 -m neon.cli examples/mlp/digits-small.yaml --backend gpu --numerics fp16 -q 2>&1 \
  | tail -3 | tee "$OUT/cli.txt"
timeout "${TEST_TIMEOUT:-300}" python3 -m pytest -q -p no:cacheprovider tests/engine -k gpu \
  -o addopts="" -W ignore --maxfail=25 -rf 2>&1 | tail -80 | tee "$OUT/pytest.txt"
timeout "${BENCH_TIMEOUT:-240}" python3 -m benchmarks.engine_gpu ${BENCH_ARGS:-} \
  --output "$OUT/engine_gpu.json" 2>&1 | tee "$OUT/engine_gpu.txt"
