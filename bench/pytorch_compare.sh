#!/usr/bin/env bash
# megagrad's Mega layer against the authors' own layer on PyTorch, on the same configurations, in
# one run: `megagrad bench-layer` and the reference harness's `bench` alternate (A B B A per round),
# so that a drift in the machine's load hits both alike. Prints the median fwd and fwd+bwd of
# each and the ratio megagrad / PyTorch (below 1: megagrad is faster).
#
#   TORCH_PYTHON=V/bin/python MEGA_REPO=path/to/mega.git MEGA_HARNESS=path/to/mega_ref.py \
#     bash bench/pytorch_compare.sh [BUILD_DIR] [THREADS] [ROUNDS] [CONFIG...]
#
# Defaults: build, 1 thread, 2 rounds, bench/configs/S.json and C.json; ITERS=5 timed passes per run
# (each side's median over them; more give steadier medians on a noisy machine). The harness (mega_ref.py)
# builds the layer from the official facebookresearch/mega sources read from a git mirror
# (MEGA_REPO); it ships with the project's reference material (shared/ref/harness/, whose README
# says how to set up PyTorch in a venv). Speed is a result to read, never an assertion.
set -euo pipefail
BUILD=${1:-build} THREADS=${2:-1} ROUNDS=${3:-2} ITERS=${ITERS:-5}
shift $(( $# < 3 ? $# : 3 ))
HERE=$(cd "$(dirname "$0")" && pwd)
CONFIGS=("$@")
[ ${#CONFIGS[@]} -gt 0 ] || CONFIGS=("$HERE/configs/S.json" "$HERE/configs/C.json")
: "${TORCH_PYTHON:?set TORCH_PYTHON to a python that has torch (see the harness README)}"
: "${MEGA_REPO:?set MEGA_REPO to a git mirror of facebookresearch/mega}"
: "${MEGA_HARNESS:?set MEGA_HARNESS to mega_ref.py (shared/ref/harness/)}"
EXE=$(realpath "$BUILD/megagrad")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export MEGA_REPO
"$EXE" info | grep -E "^openblas core"
"$TORCH_PYTHON" -c 'import torch; print("torch", torch.__version__, "| MKL", torch.backends.mkl.is_available(), "| oneDNN", torch.backends.mkldnn.is_available())'
echo "threads $THREADS, $ROUNDS round(s) of $ITERS timed passes per side"

for cfg in "${CONFIGS[@]}"; do
  name=$(basename "$cfg" .json)
  for r in $(seq 1 "$ROUNDS"); do
    for side in megagrad pytorch pytorch megagrad; do
      n=$(ls "$out" | grep -c "^$name-$side-" || true)
      j="$out/$name-$side-$n.json"
      if [ $side = megagrad ]; then
        "$EXE" bench-layer --config "$cfg" --threads "$THREADS" --iters "$ITERS" --json "$j" > "$j.log" 2>&1
      else
        "$TORCH_PYTHON" "$MEGA_HARNESS" bench --config "$cfg" --threads "$THREADS" --iters "$ITERS" --warmup 1 --json "$j" > "$j.log" 2>&1
      fi || { cat "$j.log" >&2; exit 1; }
    done
  done
done

python3 - "$out" "${CONFIGS[@]}" <<'EOF'
import glob, json, os, statistics, sys
out, configs = sys.argv[1], sys.argv[2:]
def ms(j, side, key):
    d = json.load(open(j))
    if side == "megagrad":
        return d["forward_ms" if key == "fwd" else "forward_backward_ms"]
    # The harness: {"results": {"forward_nograd": {"median_ms": ...}, "forward_backward": {...}}}
    ph = d["results"]
    k = "forward_nograd" if key == "fwd" else "forward_backward"
    v = ph[k]
    return v["median_ms"]
print(f"\n{'config':<8} {'pass':<8} {'megagrad ms':>12} {'PyTorch ms':>12} {'ratio':>7}")
for cfg in configs:
    name = os.path.basename(cfg)[:-5]
    for key in ("fwd", "fwd+bwd"):
        m = statistics.median(ms(j, "megagrad", key) for j in glob.glob(f"{out}/{name}-megagrad-*.json"))
        p = statistics.median(ms(j, "pytorch", key) for j in glob.glob(f"{out}/{name}-pytorch-*.json"))
        print(f"{name:<8} {key:<8} {m:>12.1f} {p:>12.1f} {m / p:>7.2f}")
EOF
