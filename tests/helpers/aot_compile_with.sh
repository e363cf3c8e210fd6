#!/usr/bin/env bash
# The ahead-of-time compile check (tests/helpers/aot_compile.py) with another Triton than the one
# installed, e.g. the GPU machine's 3.6.0, so a kernel that compiles cleanly here but spills or
# fails there is found before a GPU is lent. The wheel is downloaded once into .triton-wheels/
# (git-ignored) and put first on PYTHONPATH; nothing is installed.
#
#   bash tests/helpers/aot_compile_with.sh 3.6.0 [--full]
set -euo pipefail
version=${1:?usage: aot_compile_with.sh TRITON_VERSION [--full]}; shift
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=$(python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
wheels="$repo/.triton-wheels"
site="$wheels/triton-$version-cp$py"
if [ ! -d "$site/triton" ]; then
  mkdir -p "$wheels"
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$wheels" "triton==$version"
  whl=$(ls "$wheels"/triton-"$version"-cp"$py"-*.whl | head -n 1)
  python3 -m zipfile -e "$whl" "$site"
  chmod +x "$site"/triton/backends/nvidia/bin/* 2>/dev/null || true
fi
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
cd "$repo"
env -u TRITON_INTERPRET PYTHONPATH="$site:$repo${PYTHONPATH:+:$PYTHONPATH}" TRITON_CACHE_DIR="$cache" \
    TRITON_DEFAULT_FP_FUSION=1 python3 tests/helpers/aot_compile.py "$@"
