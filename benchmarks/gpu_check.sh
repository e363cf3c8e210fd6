#!/usr/bin/env bash
# The GPU run, prepared here and run there in calls that fit one issue's device time.
# NOT RUN YET: no GPU has been lent to this project's work so far.
#
# Here, on the CPU machine:
#   bash benchmarks/gpu_check.sh --prepare   DALI in parts (.dali/), the wheels the GPU machine
#                                            lacks (.wheels/: omegaconf, antlr4, PyAV) and the
#                                            decode-probe clips (.gpu-clips/); all git-ignored
#   bash benchmarks/gpu_check.sh --plan      every call in order: command, time limit, what it
#                                            carries and its size; fails if a call carries over
#                                            62 MiB or the limits add up to over 11 minutes
#                                            (benchmarks/gpu_plan.py)
# There, one call per plan line, back to back (the machine goes back after 30 idle seconds):
#   bash benchmarks/gpu_check.sh SECTION...  SECTION: probe loss stage unpack decode data train
# Each call leaves its logs, CSV, JSON and PNG in $OUT (else benchmarks/results/gpu) as one
# gpu-<sections>.tar.gz, prints a summary last, and exits non-zero if a section failed.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
stage=${GPU_STAGE:-/tmp/gpu-stage}   # what staging calls copy; lives as long as the machine stays warm
dali=${GPU_DALI:-/tmp/dali}
site=${GPU_SITE:-/tmp/gpu-site}

if [ "${1:-}" = "--prepare" ]; then
  set -e
  cd "$repo"
  for d in .dali .wheels .gpu-clips .triton-wheels; do
    grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude
  done
  bash "$repo/../shared/tools/pack_dali.sh" .dali 3.12
  cp "$repo/../shared/tools/unpack_dali.sh" .dali/
  # re-split into 56 MiB parts: four fill four calls, the fifth leaves room for the wheels
  if [ "$(stat -c %s .dali/part-00)" != $((56 << 20)) ]; then
    cat .dali/part-* > .dali/all.tar.xz && rm .dali/part-*
    split -b 56M -d -a 2 .dali/all.tar.xz .dali/part- && rm .dali/all.tar.xz
    (cd .dali && sha256sum part-* > SHA256SUMS)
  fi
  # --no-deps: numpy, PyYAML and the rest are there already (their own builds must stay first)
  rm -rf .wheels
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .wheels omegaconf==2.4.0 antlr4-python3-runtime==4.13.2 av==18.1.0
  python3 benchmarks/gpu_decode_probe.py make .gpu-clips
  du -sh .dali .wheels .gpu-clips
  exec python3 benchmarks/gpu_plan.py
fi
if [ "${1:-}" = "--plan" ]; then
  exec python3 "$repo/benchmarks/gpu_plan.py"
fi

out=${OUT:-$repo/benchmarks/results/gpu}
res=$(mktemp -d)
mkdir -p "$out"
declare -A rc
# a plain checkout: timeclr/__init__.py maps kernels/, pipelines/ and benchmarks/ into its
# namespace (docs/gpu.md, "Imports")
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

need_dali() {  # DALI and the wheels, staged by earlier calls on this same warm machine
  if [ ! -d "$dali/nvidia/dali" ]; then
    echo "DALI is not on this machine (given back between calls?): run the plan again from its first staging call"
    return 3
  fi
  if [ ! -d "$site/omegaconf" ] && ls "$stage"/.wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$stage"/.wheels/*.whl || return 3
  fi
  export PYTHONPATH="$repo:$dali:$site"
}

section_probe() {  # seconds: what the GPU, driver and libraries are, before anything long
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
  nvidia-smi -q | grep -i -E "product name|decoder|encoder|jpg|ofa|ecc mode|persistence" | head -n 20
  echo "NVDEC library (DALI's mixed decoder needs libnvcuvid):"
  ldconfig -p | grep -E "nvcuvid|nvidia-encode" || echo "  libnvcuvid NOT FOUND: the mixed decoder will fail"
  timeout 60 python3 - <<'EOF'
import torch, triton
from timeclr import nt_xent
print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__,
      "device", torch.cuda.get_device_name(), "capability", torch.cuda.get_device_capability())
z = torch.randn(2, 256, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
a = nt_xent(z, temperature=0.1, backend="triton"); a.backward()
b = nt_xent(z.detach().double(), temperature=0.1, backend="torch")
print(f"smoke: triton bf16 {a.item():.6f} vs float64 {b.item():.6f}; grad finite {bool(z.grad.isfinite().all())}")
EOF
}

section_loss() {  # the loss tests on CUDA tensors (no tuning: values, not speed), then a short sweep
  (cd "$repo" && TIMECLR_AUTOTUNE=0 timeout 120 python3 -m pytest -q -x -p no:cacheprovider tests/test_loss.py) \
    > "$res/loss_tests.log" 2>&1
  local t=$?
  tail -n 3 "$res/loss_tests.log"
  (cd "$repo" && timeout 110 python3 benchmarks/loss_kernel.py --device cuda --out "$res" --tag gpu \
      --dims 128 --dtypes bf16 fp32 --n2 4096 16384 65536) > "$res/loss_sweep.log" 2>&1
  local s=$?
  tail -n 15 "$res/loss_sweep.log"
  return $(( t != 0 ? t : s ))
}

section_stage() {  # copy what this call carried where later calls find it
  mkdir -p "$stage/parts"
  cp "$repo"/.dali/part-* "$repo"/.dali/SHA256SUMS "$stage/parts/" 2>/dev/null
  [ -f "$repo/.dali/unpack_dali.sh" ] && cp "$repo/.dali/unpack_dali.sh" "$stage/"
  for d in .wheels .gpu-clips; do [ -d "$repo/$d" ] && rm -rf "$stage/$d" && cp -r "$repo/$d" "$stage/$d"; done
  echo "staged so far: $(ls "$stage/parts" | grep part- | tr '\n' ' ')$(ls -d "$stage"/.wheels "$stage"/.gpu-clips 2>/dev/null | xargs -n1 basename 2>/dev/null | tr '\n' ' ')"
}

section_unpack() {
  local have want
  have=$(ls "$stage"/parts/part-* 2>/dev/null | wc -l)
  want=$(wc -l < "$stage/parts/SHA256SUMS" 2>/dev/null || echo "?")
  if [ "$have" != "$want" ]; then
    echo "only $have of $want DALI parts staged (machine given back between calls?): run the plan again from its first staging call"
    return 3
  fi
  timeout 60 bash "$stage/unpack_dali.sh" "$stage/parts" "$dali" && need_dali &&
    python3 -c "import nvidia.dali, omegaconf, av; print('DALI', nvidia.dali.__version__, 'PyAV', av.__version__)"
}

section_decode() {  # seconds: order with B-frames, pixels vs PyAV, MJPEG / AV1 refused
  need_dali || return $?
  (cd "$repo" && timeout 45 python3 benchmarks/gpu_decode_probe.py check "$stage/.gpu-clips" --device gpu --out "$res")
}

section_data() {  # DALI mixed (NVDEC) on H.264 vs PyAV workers; decoder utilisation sampled meanwhile
  need_dali || return $?
  nvidia-smi dmon -s u -o T > "$res/nvdec_dmon.log" 2>&1 &
  local dmon=$!
  (cd "$repo" && timeout 100 python3 benchmarks/data_pipeline.py --device gpu --quick --threads 8 \
      --out "$res" --json "$res/data_pipeline_gpu.json") > "$res/data.log" 2>&1
  local r=$?
  kill "$dmon" 2>/dev/null
  tail -n 15 "$res/data.log"
  return $r
}

section_train() {  # R(2+1)D-18, 2 views x 16x112^2, bf16, DALI-fed vs in-memory
  need_dali || return $?
  (cd "$repo" && timeout 120 python3 benchmarks/train_throughput.py --device cuda --backbone r2plus1d_18 \
      --frames 16 --crop 112 --batch-size 32 --dali-threads 8 --steps 20 --warmup 5 --rounds 2 --max-wait 0 \
      --out "$res" --tag gpu) > "$res/train.log" 2>&1
  local r=$?
  tail -n 12 "$res/train.log"
  return $r
}

[ $# -gt 0 ] || { echo "usage: gpu_check.sh --prepare | --plan | SECTION... (probe loss stage unpack decode data train)"; exit 2; }
status=0
for s in "$@"; do
  if ! declare -F "section_$s" >/dev/null; then echo "unknown section $s"; exit 2; fi
  echo "== $s =="
  t0=$SECONDS
  "section_$s" 2>&1 | tee "$res/$s.txt"
  rc[$s]=${PIPESTATUS[0]}
  echo "-- $s: exit ${rc[$s]} in $((SECONDS - t0)) s"
  [ "${rc[$s]}" = 0 ] || status=1
done
tar -czf "$out/gpu-$(IFS=-; echo "$*").tar.gz" -C "$res" .
echo "== summary =="
for s in "$@"; do printf '%-8s exit %s\n' "$s" "${rc[$s]}"; done
echo "results: $out/gpu-$(IFS=-; echo "$*").tar.gz"
exit $status
