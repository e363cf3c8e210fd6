#!/usr/bin/env bash
# The fused loss on a real GPU, as one prepared run: the loss tests on CUDA tensors (the compiled
# Triton kernel against the float64 reference), then the benchmark sweep. Writes logs, CSV and
# PNG to RESULTS_DIR and prints a summary last.
#
#   bash benchmarks/gpu_loss.sh RESULTS_DIR [extra loss_kernel.py args]
#
# Needs torch + triton with a GPU. Without pip access, put the pytest wheels in .wheels/
# (pip download pytest iniconfig pluggy packaging) and they are installed to a temp folder.
set -uo pipefail
out=${1:?usage: gpu_loss.sh RESULTS_DIR}; shift
mkdir -p "$out"
repo=$(cd "$(dirname "$0")/.." && pwd)

# timeclr without pip install: run from the checkout, where timeclr/__init__.py maps kernels/,
# pipelines/ and benchmarks/ into its namespace (tests/test_source_checkout.py checks that on CPU)
site=$(mktemp -d)
if ! python3 -c "import pytest" 2>/dev/null && ls "$repo"/.wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target "$site" "$repo"/.wheels/*.whl
fi
export PYTHONPATH="$repo:$site:${PYTHONPATH:-}" PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"

echo "== loss tests on CUDA =="
(cd "$repo" && timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_loss.py 2>&1) | tee "$out/gpu_loss_tests.log"
tests_rc=${PIPESTATUS[0]}

echo "== benchmark =="
(cd "$repo" && timeout 420 python3 benchmarks/loss_kernel.py --device cuda --out "$out" "$@" 2>&1) | tee "$out/gpu_loss_bench.log"
bench_rc=${PIPESTATUS[0]}

echo "== summary =="
tail -n 1 "$out/gpu_loss_tests.log"
echo "tests exit $tests_rc, benchmark exit $bench_rc; results in $out"
