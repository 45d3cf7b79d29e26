#!/usr/bin/env bash
# Mega alone on ListOps 'medium' for twice the comparison's steps (2000 of batch 32, seed 1,
# ../mega.json): is Mega still rising where the comparison stops, and does it pass the
# Transformer's ~35% plateau?
#
#   experiments/listops_medium/extended/run.sh OUT_DIR          # ~25 min on one core
#   TINY=1 experiments/listops_medium/extended/run.sh OUT_DIR   # for CI
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../../lib.sh" "$@"  # checks OUT_DIR: sets OUT, and TINY
STEPS="${STEPS:-2000}"
EVAL_EVERY="${EVAL_EVERY:-250}"
EVAL_BATCHES=0
DATA='{}'
if [ "$TINY" = 1 ]; then STEPS=3; EVAL_EVERY=3; EVAL_BATCHES=1; DATA='{"num_train": 64}'; fi
mkdir -p "$OUT"
python3 - "$HERE/../mega.json" "$DATA" "$STEPS" "$EVAL_EVERY" "$EVAL_BATCHES" > "$OUT/config-mega.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg.setdefault("data", {}).update(json.loads(sys.argv[2]))
steps, every, batches = map(int, sys.argv[3:6])
cfg["train"] = {"steps": steps, "eval_every": every, "checkpoint_every": steps, "eval_batches": batches, "seed": 1}
print(json.dumps(cfg, indent=1))
PY
run_queue <<< "run_one '$OUT/mega' 'mega seed 1, $STEPS steps' 1 --task listops --config '$OUT/config-mega.json'"
python3 "$EXPERIMENTS_DIR/summarize.py" --experiment listops_medium_extended --out "$OUT/results.json" \
  --plot "$OUT/val_accuracy.svg" --table "$OUT/table.md" --majority 16.2 \
  --title "ListOps medium: Mega alone, $STEPS steps of batch 32" \
  --note "Mega as in ../mega.json (postnorm), seed 1, $STEPS steps: the comparison's run continued to twice its steps (a fresh run: the lr decays over $STEPS steps)" \
  "$OUT/mega"
