#!/usr/bin/env bash
# GPU validation in one prepared run (issue #7): the fused loss, the DALI mixed pipeline on H.264
# and an R(2+1)D-18 training step, on one GPU. NOT RUN YET: no GPU has been lent to this project's
# work so far; every step it calls is tested on CPU where it can be.
#
# 1. Here, on the CPU machine (once; both folders are git-ignored):
#      bash benchmarks/gpu_check.sh --prepare
#    packs DALI into .dali/ (five parts of <= 48 MiB, with unpack_dali.sh and SHA256SUMS) and
#    downloads the wheels the GPU machine lacks (omegaconf, PyAV, tqdm, matplotlib, pytest) for
#    Python 3.12 into .wheels/.
#    Measured here: .dali 230 MB in five parts of 48 MiB or less, .wheels ~60 MB (PyAV is 35 MB of
#    it), so each needs calls of its own under the 64 MiB a call carries.
# 2. On the device, calls back to back (the machine goes back after 30 idle seconds): five that
#    each carry one .dali/part-0k (plus SHA256SUMS and unpack_dali.sh) and copy it to /tmp/dali-parts/,
#    one that carries .wheels and copies it to /tmp/wheels/, then
#      .dali/unpack_dali.sh /tmp/dali-parts /tmp/dali && bash benchmarks/gpu_check.sh "$OUT" /tmp/dali loss
#    and, on the same warm machine, the sections `data` and `train` (one 10-minute call cannot hold
#    all three: loss ~5 min, data ~3, training ~2, estimated).
#
#   bash benchmarks/gpu_check.sh RESULTS_DIR [DALI_DIR] [loss|data|train|all]
# Writes logs, CSV, JSON and PNG to RESULTS_DIR and prints a summary table last.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

if [ "${1:-}" = "--prepare" ]; then
  set -e
  bash "$repo/../shared/tools/pack_dali.sh" "$repo/.dali" 3.12
  cp "$repo/../shared/tools/unpack_dali.sh" "$repo/.dali/"
  # --no-deps and no numpy: the device's numpy (torch's) must stay the one imported
  rm -rf "$repo/.wheels"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
      --platform manylinux_2_28_x86_64 --implementation cp -d "$repo/.wheels" \
      omegaconf antlr4-python3-runtime PyYAML av tqdm matplotlib contourpy cycler fonttools kiwisolver \
      pyparsing python-dateutil six pillow pytest pytest-timeout iniconfig pluggy packaging pygments
  grep -qx '/.dali/' "$repo/.git/info/exclude" 2>/dev/null || echo '/.dali/' >> "$repo/.git/info/exclude"
  du -sh "$repo/.dali" "$repo/.wheels"
  exit 0
fi

out=${1:?usage: gpu_check.sh RESULTS_DIR [DALI_DIR] [loss|data|train|all] | --prepare}
dali=${2:-/tmp/dali}
section=${3:-all}
loss_rc=- data_rc=- train_rc=-
mkdir -p "$out"

# timeclr without pip install (kernels/ and pipelines/ map into its namespace), DALI and the wheels
site=$(mktemp -d)
mkdir -p "$site/timeclr"
ln -s "$repo"/timeclr/* "$site/timeclr/"
ln -s "$repo/kernels" "$site/timeclr/kernels"
ln -s "$repo/pipelines" "$site/timeclr/pipelines"
for wheels in "$repo/.wheels" /tmp/wheels; do  # carried in the repo, or copied to /tmp by an earlier call
  if ls "$wheels"/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target "$site" "$wheels"/*.whl
    break
  fi
done
export PYTHONPATH="$site:$dali:${PYTHONPATH:-}" PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, triton, nvidia.dali, av, omegaconf; print('torch', torch.__version__, 'triton',
triton.__version__, 'DALI', nvidia.dali.__version__, 'PyAV', av.__version__)" 2>&1 | tee -a "$out/gpu.txt"

if [ "$section" = loss ] || [ "$section" = all ]; then
echo "== 1. loss: tests on CUDA tensors, then the sweep (bf16 and fp32, D=128, 2N 4096..131072) =="
timeout 540 bash "$repo/benchmarks/gpu_loss.sh" "$out" --dims 128 --dtypes bf16 fp32 > "$out/loss.log" 2>&1
loss_rc=$?
tail -n 25 "$out/loss.log"
fi

if [ "$section" = data ] || [ "$section" = all ]; then
echo "== 2. data: DALI mixed (NVDEC) on H.264 vs PyAV workers; decoder utilisation sampled meanwhile =="
nvidia-smi dmon -s u -o T > "$out/nvdec_dmon.log" 2>&1 &
dmon=$!
(cd "$repo" && timeout 240 python3 benchmarks/data_pipeline.py --device gpu --quick --threads 8 \
    --out "$out" --json "$out/data_pipeline_gpu.json") > "$out/data.log" 2>&1
data_rc=$?
kill "$dmon" 2>/dev/null
tail -n 20 "$out/data.log"
fi

if [ "$section" = train ] || [ "$section" = all ]; then
echo "== 3. training step: R(2+1)D-18, 2 views x 16x112², bf16, DALI-fed vs in-memory =="
(cd "$repo" && timeout 240 python3 benchmarks/train_throughput.py --device cuda --backbone r2plus1d_18 \
    --frames 16 --crop 112 --batch-size 32 --dali-threads 8 --max-wait 0 --out "$out") > "$out/train.log" 2>&1
train_rc=$?
tail -n 12 "$out/train.log"
fi

echo "== summary =="
printf '%-34s %s\n' "GPU" "$(head -n 2 "$out/gpu.txt" | tail -n 1)" \
  "loss tests + sweep (exit)" "$loss_rc" "data pipeline (exit)" "$data_rc" "training step (exit)" "$train_rc" \
  "max NVDEC utilisation (dec %)" "$(awk '!/^#/ && NF>=6 {if ($6+0 > m) m = $6+0} END {print m+0}' "$out/nvdec_dmon.log" 2>/dev/null)"
grep -h "DALI / PyAV\|data-bound ratio" "$out/data.log" "$out/train.log" 2>/dev/null
echo "results in $out"
