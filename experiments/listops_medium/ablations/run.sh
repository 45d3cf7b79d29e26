#!/usr/bin/env bash
# Recipe ablations for Mega on ListOps 'medium' (lengths 100-400): which of the official
# mega_lra_listop settings make Mega learn faster at CPU scale. Every setting gets the same budget
# (STEPS steps of batch 32, one thread, seed 1, the same data), against the default CPU model.
#
#   experiments/listops_medium/ablations/run.sh OUT_DIR     # ~35 min on 2 cores (JOBS=2)
#   TINY=1 experiments/listops_medium/ablations/run.sh OUT_DIR   # 3 steps each, for CI
#   ONLY="default postnorm" ...                              # a subset of the settings
#
# Writes OUT_DIR/<setting>/ (one megagrad run each), OUT_DIR/results.json, OUT_DIR/table.md and
# OUT_DIR/val_accuracy.svg.
set -euo pipefail
source "$(dirname "$0")/../../lib.sh" "$@"  # checks OUT_DIR: sets OUT, and TINY
STEPS="${STEPS:-600}"
EVAL_EVERY="${EVAL_EVERY:-100}"
SEED="${SEED:-1}"
EXTRA='"eval_batches": 0'
DATA='"preset": "medium"'
if [ "$TINY" = 1 ]; then STEPS=3; EVAL_EVERY=3; EXTRA='"eval_batches": 1'; DATA='"preset": "medium", "num_train": 64'; fi
mkdir -p "$OUT/configs"

# name | model overrides (JSON members) | train overrides (JSON members)
SETTINGS=$(cat <<'TABLE'
default|"type": "mega"|
postnorm|"prenorm": false|
lr1e-3|"type": "mega"|"lr": 1e-3
postnorm_lr1e-3|"prenorm": false|"lr": 1e-3
warmup300|"type": "mega"|"warmup": 300
dropout0.1|"dropout": 0.1|
scalenorm|"norm_type": "scalenorm"|
transformer|"type": "transformer"|
TABLE
)
# Not run for the committed results (no time left in that session): depth and chunking.
# ONLY="layers4 chunk64" runs them.
MORE=$(cat <<'TABLE'
chunk64|"chunk_size": 64|
layers4|"layers": 4|
TABLE
)

queue=""
dirs=()
while IFS='|' read -r name model train; do
  [ -n "$name" ] || continue
  if [ -n "${ONLY:-}" ] && ! [[ " $ONLY " == *" $name "* ]]; then continue; fi
  cfg="$OUT/configs/$name.json"
  printf '{"data": {%s},\n "model": {%s},\n "train": {"steps": %s, "eval_every": %s, "checkpoint_every": %s, "log_every": 50, "seed": %s, %s%s}}\n' \
    "$DATA" "$model" "$STEPS" "$EVAL_EVERY" "$STEPS" "$SEED" "$EXTRA" "${train:+, $train}" > "$cfg"
  queue+="run_one '$OUT/$name' '$name' 0 --task listops --config '$cfg'"$'\n'
  dirs+=("$OUT/$name")
done <<< "$SETTINGS"$'\n'"${ONLY:+$MORE}"

printf '%s' "$queue" | run_queue
python3 "$EXPERIMENTS_DIR/summarize.py" --experiment listops_medium_ablations --out "$OUT/results.json" \
  --plot "$OUT/val_accuracy.svg" --table "$OUT/table.md" --majority 16.2 \
  --title "ListOps medium: Mega recipe ablations, $STEPS steps of batch 32, seed $SEED" \
  --note "each setting changes one thing against 'default' (the CPU model of train --task listops), same data, seed and steps" \
  "${dirs[@]}"
