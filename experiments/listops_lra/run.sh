#!/usr/bin/env bash
# ListOps at LRA's lengths (the 'lra' preset: 501-1999 tokens, 96000/2000/2000 examples generated
# offline with data seed 0): Mega-chunk (chunk 128 and 256) against the Transformer, the models of
# ../listops_medium/ (D 64; max_positions 2048), each given a wall-time budget on one core, one run
# at a time. Two parts:
#
#   1. probe/: the cost of one training step at batch 32 and L = 512, 1024, 2048 (the LRA range),
#      by ../scaling/run.sh (megagrad bench-step: time per step, peak resident memory), with the
#      same stop rules: memory over 16 GiB, or over MEM_RUN_GIB (default 8) predicted, is not run
#      on this shared machine; it is extrapolated and reported.
#   2. training: each model for as many steps as its probed step time at L 2048 fits into its
#      budget (80% of it: evaluations and data generation take the rest), batch 32 (the
#      Transformer as 4 x 8 with gradient accumulation: batch 32 at L 2048 would not be run here,
#      see the probe), validation on 256 sequences (8 batches of 32) four times per run.
#
#   experiments/listops_lra/run.sh OUT_DIR          # ~60-70 min on one core (the committed run: 64)
#   TINY=1 experiments/listops_lra/run.sh OUT_DIR   # a few steps on short sequences: what CI runs
#   BUDGET_MEGA_MIN=20 BUDGET_TRANSFORMER_MIN=20 BUDGET_CHUNK256_MIN=10 ...   (the defaults)
#   STEPS_MEGA=617 STEPS_TRANSFORMER=44 STEPS_CHUNK256=190 ...   (fixed steps: the committed run's)
#
# Leaves OUT_DIR/probe/ (as ../scaling/run.sh), OUT_DIR/{mega_chunk128,transformer,mega_chunk256}/
# (run_one folders), OUT_DIR/results.json (the training runs, and the probe under "probe"),
# OUT_DIR/table.md, OUT_DIR/val_accuracy.svg, OUT_DIR/time.svg and OUT_DIR/memory.svg (the probe's).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../lib.sh" "$@"  # checks OUT_DIR: sets OUT, and TINY
JOBS=1  # the runs are compared on wall time: one at a time
BUDGET_MEGA_MIN="${BUDGET_MEGA_MIN:-20}"
BUDGET_TRANSFORMER_MIN="${BUDGET_TRANSFORMER_MIN:-20}"
BUDGET_CHUNK256_MIN="${BUDGET_CHUNK256_MIN:-10}"
MEM_RUN_GIB="${MEM_RUN_GIB:-8}"
EVAL_BATCHES=8
DATA='{"preset": "lra"}'
if [ "$TINY" = 1 ]; then EVAL_BATCHES=1; DATA='{"preset": "lra", "num_train": 64, "min_len": 60, "max_len": 120}'; fi
mkdir -p "$OUT"
[ ! -e "$OUT/results.json" ] || { echo "experiments: $OUT already holds results: give run.sh a fresh OUT_DIR" >&2; exit 2; }

# 1. The probe (TINY: L = 64, 128 at batch 32).
BATCH=32 LENGTHS="512 1024 2048" MODELS="mega_chunk128 mega_chunk256 transformer" ITERS=2 MEM_RUN_GIB="$MEM_RUN_GIB" \
  TINY="$TINY" bash "$HERE/../scaling/run.sh" "$OUT/probe"
L_PROBE=2048
[ "$TINY" = 1 ] && L_PROBE=128

# 2. Training. steps_for MODEL BUDGET_MIN: the steps that fit into 80% of the budget at the
# probed (or, where it was not run, extrapolated) time per step at L_PROBE.
steps_for() {
  if [ "$TINY" = 1 ]; then echo 3; return; fi
  local ms
  ms=$(python3 "$HERE/../scaling/summarize_scaling.py" --predict "$1" "$L_PROBE" step_ms "$OUT/probe")
  [ -n "$ms" ] || { echo "experiments: no probe of $1 to size its run" >&2; exit 1; }
  python3 -c 'import sys; print(max(1, int(0.8 * float(sys.argv[2]) * 60000 / float(sys.argv[1]))))' "$ms" "$2"
}
config_for() {  # base chunk batch accum steps -> the run configuration (validation: the same 256 sequences)
  local steps=$5 every=$(( $5 / 4 > 0 ? $5 / 4 : 1 ))
  python3 - "$HERE/../listops_medium/$1.json" "$2" "$DATA" "$3" "$4" "$steps" "$every" "$((EVAL_BATCHES * 32 / $3))" <<'PY'
import json, sys
base, chunk, data, batch, accum, steps, every, eval_batches = sys.argv[1:]
cfg = json.load(open(base))
cfg["data"] = json.loads(data)
cfg["model"]["max_positions"] = 2048
if cfg["model"]["type"] == "mega":
    cfg["model"]["chunk_size"] = int(chunk)
cfg["train"] = {"batch_size": int(batch), "accum": int(accum), "steps": int(steps), "eval_every": int(every),
                "checkpoint_every": int(steps), "eval_batches": int(eval_batches), "seed": 1}
print(json.dumps(cfg, indent=1))
PY
}
# STEPS_MEGA, STEPS_TRANSFORMER, STEPS_CHUNK256 fix the steps instead (the committed run: 617, 44, 190).
S_MEGA=${STEPS_MEGA:-$(steps_for mega_chunk128 "$BUDGET_MEGA_MIN")}
S_TRANSFORMER=${STEPS_TRANSFORMER:-$(steps_for transformer "$BUDGET_TRANSFORMER_MIN")}
S_CHUNK256=${STEPS_CHUNK256:-$(steps_for mega_chunk256 "$BUDGET_CHUNK256_MIN")}
config_for mega 128 32 1 "$S_MEGA" > "$OUT/config-mega_chunk128.json"
config_for transformer -1 8 4 "$S_TRANSFORMER" > "$OUT/config-transformer.json"
config_for mega 256 32 1 "$S_CHUNK256" > "$OUT/config-mega_chunk256.json"
echo "experiments: steps: Mega-chunk 128 $S_MEGA ($BUDGET_MEGA_MIN min), Transformer $S_TRANSFORMER ($BUDGET_TRANSFORMER_MIN min), Mega-chunk 256 $S_CHUNK256 ($BUDGET_CHUNK256_MIN min)"
printf '%s\n' \
  "run_one '$OUT/mega_chunk128' 'Mega-chunk 128 ($BUDGET_MEGA_MIN min)' 0 --task listops --config '$OUT/config-mega_chunk128.json'" \
  "run_one '$OUT/transformer' 'Transformer ($BUDGET_TRANSFORMER_MIN min)' 0 --task listops --config '$OUT/config-transformer.json'" \
  "run_one '$OUT/mega_chunk256' 'Mega-chunk 256 ($BUDGET_CHUNK256_MIN min)' 0 --task listops --config '$OUT/config-mega_chunk256.json'" \
  | run_queue

majority=$(grep -oE 'validation majority class [0-9.]+' "$OUT/mega_chunk128/train.log" | head -1 | grep -oE '[0-9.]+$' || echo "")
python3 "$EXPERIMENTS_DIR/summarize.py" --experiment listops_lra --out "$OUT/results.json" \
  --plot "$OUT/val_accuracy.svg" --table "$OUT/table.md" --window 10 ${majority:+--majority "$majority"} \
  --title "ListOps at LRA lengths (501-1999): accuracy within a wall-time budget, one core" \
  --note "ListOps 'lra' preset: lengths 501-1999, 96000/2000/2000 examples generated with data seed 0; batch 32 (the Transformer: 4 x 8, gradient accumulation), padded to the longest sequence of each batch (tokens/s counts the padding); validation on the first 256 sequences of the validation split (8 batches); majority class of the whole validation split: ${majority:-?}%" \
  --note "steps sized to the budget from the probe's time per step at L $L_PROBE, batch 32 (80% of the budget): Mega-chunk 128 $S_MEGA steps ($BUDGET_MEGA_MIN min), Transformer $S_TRANSFORMER ($BUDGET_TRANSFORMER_MIN min), Mega-chunk 256 $S_CHUNK256 ($BUDGET_CHUNK256_MIN min); one run at a time, one thread each" \
  "$OUT/mega_chunk128" "$OUT/transformer" "$OUT/mega_chunk256"
# The probe: into results.json (under "probe"), the table and the plots.
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
res = json.load(open(os.path.join(out, "results.json")))
res["probe"] = json.load(open(os.path.join(out, "probe", "results.json")))
res["plots"] = ["val_accuracy.svg", "time.svg", "memory.svg"]
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=1)
PY
cp "$OUT/probe/time.svg" "$OUT/probe/memory.svg" "$OUT/"
{ echo; echo "One training step at batch 32 (probe/):"; echo; cat "$OUT/probe/table.md"; } >> "$OUT/table.md"
cat "$OUT/table.md"
