#!/usr/bin/env bash
# Mega against the Transformer on ListOps 'medium' (lengths 100-400, 20k/1k/1k generated offline),
# at equal parameter counts (within 5%) and equal steps, two seeds each.
#
#   experiments/listops_medium/run.sh OUT_DIR          # ~60 min on 2 busy cores (JOBS=2, THREADS=1)
#   TINY=1 experiments/listops_medium/run.sh OUT_DIR   # a few steps, for CI
#   STEPS=N SEEDS="1 2 3" ...                          # another budget
#
# Leaves OUT_DIR/mega/ and OUT_DIR/transformer/ (seed 1; each with checkpoint.safetensors,
# metrics.jsonl, curves.svg, train.log, config.json, test.txt), OUT_DIR/{mega,transformer}-seed<S>/
# for the other seeds, and OUT_DIR/results.json, OUT_DIR/table.md, OUT_DIR/val_accuracy.svg.
# The models are mega.json and transformer.json next to this script.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../lib.sh" "$@"  # checks OUT_DIR: sets OUT, and TINY
STEPS="${STEPS:-1000}"
EVAL_EVERY="${EVAL_EVERY:-125}"
SEEDS="${SEEDS:-1 2}"
EVAL_BATCHES=0
DATA='{}'
if [ "$TINY" = 1 ]; then STEPS=3; EVAL_EVERY=3; EVAL_BATCHES=1; SEEDS="1"; DATA='{"num_train": 64}'; fi
mkdir -p "$OUT"

queue_for() {  # model seed
  local model=$1 seed=$2 dir="$OUT/$1"
  [ "$seed" = "$(set -- $SEEDS; echo "$1")" ] || dir="$OUT/$model-seed$seed"
  printf '{"data": %s, "train": {"steps": %s, "eval_every": %s, "checkpoint_every": %s, "eval_batches": %s, "seed": %s}}\n' \
    "$DATA" "$STEPS" "$EVAL_EVERY" "$STEPS" "$EVAL_BATCHES" "$seed" > "$OUT/budget-$model-$seed.json"
  # The model's file, then the budget: two --config files are merged in order by a small wrapper.
  python3 - "$HERE/$model.json" "$OUT/budget-$model-$seed.json" > "$OUT/config-$model-$seed.json" <<'PY'
import json, sys
def merge(a, b):
    for k, v in b.items():
        a[k] = merge(a.get(k, {}), v) if isinstance(v, dict) else v
    return a
cfg = {}
for p in sys.argv[1:]:
    cfg = merge(cfg, json.load(open(p)))
print(json.dumps(cfg, indent=1))
PY
  rm -f "$OUT/budget-$model-$seed.json"
  echo "run_one '$dir' '$model seed $seed' 1 --task listops --config '$OUT/config-$model-$seed.json'"
}

queue=""
# Order: the two runs of one seed side by side; the next seed's in the other order, so that the
# slot freed first (the faster model's) takes the slower model next: both slots end together.
i=0
for seed in $SEEDS; do
  if [ $((i % 2)) = 0 ]; then order="mega transformer"; else order="transformer mega"; fi
  for model in $order; do queue+="$(queue_for "$model" "$seed")"$'\n'; done
  i=$((i + 1))
done
DIRS=()
first=$(set -- $SEEDS; echo "$1")
for seed in $SEEDS; do
  for model in mega transformer; do
    if [ "$seed" = "$first" ]; then DIRS+=("$OUT/$model"); else DIRS+=("$OUT/$model-seed$seed"); fi
  done
done

printf '%s' "$queue" | run_queue
python3 "$EXPERIMENTS_DIR/summarize.py" --experiment listops_medium --out "$OUT/results.json" \
  --plot "$OUT/val_accuracy.svg" --table "$OUT/table.md" --majority 16.2 \
  --title "ListOps medium: Mega vs Transformer, $STEPS steps of batch 32" \
  --note "ListOps 'medium' preset: lengths 100-400, 20000/1000/1000 examples generated with data seed 0; 'test' is the test split (megagrad eval --split test) of the final checkpoint" \
  "${DIRS[@]}"
