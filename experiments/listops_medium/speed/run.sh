#!/usr/bin/env bash
# Training speed on ListOps 'medium' under equal conditions: Mega (../mega.json) and the
# Transformer (../transformer.json) side by side for STEPS steps (one thread each, the pair as in
# the comparison), then the paper's model (--recipe official: 6 layers, D 80, batch 64) alone for
# OFFICIAL_STEPS steps, for an estimate of what the official recipe costs on this CPU.
#
#   experiments/listops_medium/speed/run.sh OUT_DIR          # ~5 min
#   TINY=1 experiments/listops_medium/speed/run.sh OUT_DIR   # for CI
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../../lib.sh" "$@"  # checks OUT_DIR: sets OUT, and TINY
STEPS="${STEPS:-100}"
OFFICIAL_STEPS="${OFFICIAL_STEPS:-20}"
DATA='"preset": "medium"'
if [ "$TINY" = 1 ]; then STEPS=2; OFFICIAL_STEPS=1; DATA='"preset": "medium", "num_train": 64'; fi
mkdir -p "$OUT"
budget() {  # steps -> train section members: no evaluation but the final one, on one batch
  printf '"steps": %s, "eval_every": %s, "checkpoint_every": %s, "eval_batches": 1, "log_every": 10' "$1" "$1" "$1"
}
for model in mega transformer; do
  python3 - "$HERE/../$model.json" "$DATA" "$(budget "$STEPS")" > "$OUT/config-$model.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg.setdefault("data", {}).update(json.loads("{" + sys.argv[2] + "}"))
cfg.setdefault("train", {}).update(json.loads("{" + sys.argv[3] + "}"))
print(json.dumps(cfg, indent=1))
PY
done
printf '{"data": {%s}, "train": {%s}}\n' "$DATA" "$(budget "$OFFICIAL_STEPS")" > "$OUT/config-official.json"
printf '%s\n' "run_one '$OUT/mega' 'mega' 0 --task listops --config '$OUT/config-mega.json'" \
  "run_one '$OUT/transformer' 'transformer' 0 --task listops --config '$OUT/config-transformer.json'" | run_queue
JOBS=1 run_queue <<< "run_one '$OUT/official' 'official recipe (alone)' 0 --task listops --recipe official --config '$OUT/config-official.json'"
python3 "$EXPERIMENTS_DIR/summarize.py" --experiment listops_medium_speed --out "$OUT/results.json" \
  --plot "$OUT/val_accuracy.svg" --table "$OUT/table.md" --window 10 \
  --title "ListOps medium: speed runs (accuracy meaningless)" \
  --note "speed only: mega and transformer side by side ($STEPS steps of batch 32, one thread each), then the official recipe alone ($OFFICIAL_STEPS steps of batch 64, one thread); the accuracies after so few steps mean nothing" \
  "$OUT/mega" "$OUT/transformer" "$OUT/official"
