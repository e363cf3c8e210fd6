#!/usr/bin/env bash
# Threads on a shared CPU: the training step (benchmarks/train_throughput.py, the synthetic config)
# with torch's default intra-op threads and with one, on a quiet machine and beside one busy
# process (another job on the same cores). Writes train_throughput_cpu_threads<N>[_busy].csv/.png
# and prints each run's median clips/s. What docs/troubleshooting.md's advice on slow steps rests on.
#
#   bash benchmarks/thread_contention.sh
set -euo pipefail
cd "$(dirname "$0")/.."
run() {  # $1: torch threads (0 = torch's default), $2: tag
  local extra=()
  [ "$1" != 0 ] && extra=(--threads "$1")
  python benchmarks/train_throughput.py --steps 20 --warmup 5 --rounds 2 --max-wait 0 --tag "$2" "${extra[@]}" \
    2>/dev/null | sed -n '/^summary (median/,/^wrote/p' | sed "s/^/$2: /"
}
run 0 threads-default
run 1 threads1
python -c "while True: pass" & busy=$!
trap 'kill $busy 2>/dev/null' EXIT
run 0 threads-default_busy
run 1 threads1_busy
