#!/usr/bin/env bash
# Compares the speed of two builds of megagrad (say, before and after a change) on this machine,
# in one run: bench_core, bench_mega and `megagrad bench-layer` on every config of bench/configs/,
# each on one thread. The builds alternate in the order A B B A (then again), so that a drift in
# the machine's load hits both alike, and bench/ab_compare.py prints, for every figure, the median
# over the rounds of each build and the ratio B / A.
#
#   bash bench/ab_builds.sh BUILD_A BUILD_B OUT_DIR [ROUNDS]    (ROUNDS: A-B pairs, default 2)
#
# BUILD_A and BUILD_B are build folders holding megagrad, bench_core and bench_mega (e.g. a
# worktree of the old commit, built with `make build BUILD=...`). Output: OUT_DIR/<build>-<n>/*.txt
# and *.json, and OUT_DIR/summary.txt. Takes about 4 minutes per round on the development VM.
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,13p "$0"; exit 2; }
A=$(realpath "$1") B=$(realpath "$2") OUT=$3 ROUNDS=${4:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
for b in "$A" "$B"; do
  for exe in megagrad bench_core bench_mega; do
    [ -x "$b/$exe" ] || { echo "ab_builds: $b/$exe is missing: build it first" >&2; exit 2; }
  done
done
mkdir -p "$OUT"
export MEGAGRAD_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

run_one() {  # build label round
  local build=$1 dir="$OUT/$2-$3"
  mkdir -p "$dir"
  "$build/bench_core" > "$dir/bench_core.txt" 2>&1
  "$build/bench_mega" > "$dir/bench_mega.txt" 2>&1
  for cfg in "$HERE"/configs/*.json; do
    local name
    name=$(basename "$cfg" .json)
    "$build/megagrad" bench-layer --config "$cfg" --threads 1 --iters 5 --json "$dir/layer-$name.json" \
      > "$dir/layer-$name.txt" 2>&1
  done
}

for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then order="A B"; else order="B A"; fi
  for x in $order; do
    echo "round $r: build $x"
    if [ "$x" = A ]; then run_one "$A" A "$r"; else run_one "$B" B "$r"; fi
  done
done
python3 "$HERE/ab_compare.py" "$OUT" | tee "$OUT/summary.txt"
