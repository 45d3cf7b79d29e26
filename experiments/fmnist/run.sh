#!/usr/bin/env bash
# Sequential Fashion-MNIST (784 pixels, one real-valued pixel per step: the LRA-Image analogue;
# issue 13 item 3). Goal: at least 88% test accuracy. The recipes are the JSON files named in
# RUNS, next to this script, each a --config over the fmnist defaults (megagrad train --task
# fmnist --show-config); seed 1, THREADS threads each (default 2: one run uses the machine),
# JOBS at a time (default 1), and the final checkpoint of each is evaluated on the whole test split (10,000 images). The default is the recipe the
# probes chose (probes.md): mega_bn_chunk49 (batchnorm, chunk 49, lr 1e-2); mega_lr1e-2 (the
# defaults at lr 1e-2) is the runner-up, RUNS="mega_bn_chunk49 mega_lr1e-2" runs both side by side.
#
#   experiments/fmnist/run.sh OUT_DIR          # ~40 min on 2 idle cores (8000 steps, 89.4% test)
#   TINY=1 experiments/fmnist/run.sh OUT_DIR   # a few steps, for CI (no test evaluation: 10,000
#                                              # images are minutes; the test path is listops_medium's)
#   STEPS=N RUNS="a b" EVAL_EVERY=N ...        # another budget or a subset of the recipes
#   STEPS=2500 EVAL_EVERY=200 THREADS=1        # the earlier run kept in results_2500steps.json
#
# Leaves OUT_DIR/<recipe>/ (run_one folders: checkpoint.safetensors, metrics.jsonl, curves.svg,
# train.log, config.json, test.txt), OUT_DIR/results.json, OUT_DIR/table.md, OUT_DIR/val_accuracy.svg.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
THREADS="${THREADS:-2}" JOBS="${JOBS:-1}"  # one run at a time, on both cores (lib.sh's defaults: 1 and 2)
source "$HERE/../lib.sh" "$@"  # checks OUT_DIR: sets OUT, and TINY
RUNS="${RUNS:-mega_bn_chunk49}"
STEPS="${STEPS:-8000}"
EVAL_EVERY="${EVAL_EVERY:-400}"
EVAL_BATCHES="${EVAL_BATCHES:-20}"  # validation curve: the first 640 of the 5000 held-out training images (20 batches of 32)
DATA='{}'
TEST=1
if [ "$TINY" = 1 ]; then STEPS=3; EVAL_EVERY=3; EVAL_BATCHES=1; DATA='{"val_size": 64}'; TEST=0; fi
mkdir -p "$OUT"
[ ! -e "$OUT/results.json" ] || { echo "experiments: $OUT already holds results: give run.sh a fresh OUT_DIR" >&2; exit 2; }

cut -d' ' -f1-3 /proc/loadavg > "$OUT/load_start"  # the machine's load (1/5/15-min averages): it is shared
queue="" DIRS=()
for name in $RUNS; do
  [ -f "$HERE/$name.json" ] || { echo "experiments: no recipe $HERE/$name.json" >&2; exit 2; }
  python3 - "$HERE/$name.json" "$DATA" "$STEPS" "$EVAL_EVERY" "$EVAL_BATCHES" > "$OUT/config-$name.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg.setdefault("data", {}).update(json.loads(sys.argv[2]))
steps, every, batches = map(int, sys.argv[3:6])
cfg.setdefault("train", {}).update({"steps": steps, "eval_every": every, "checkpoint_every": steps,
                                    "eval_batches": batches, "seed": 1})
print(json.dumps(cfg, indent=1))
PY
  queue+="run_one '$OUT/$name' '$name' $TEST --task fmnist --config '$OUT/config-$name.json'"$'\n'
  DIRS+=("$OUT/$name")
done
printf '%s' "$queue" | run_queue
cut -d' ' -f1-3 /proc/loadavg > "$OUT/load_end"
# The goal, from each run's measured test accuracy (TINY: none, no test evaluation).
goal=$(python3 - "${DIRS[@]}" <<'PY'
import os, re, sys
parts = []
for d in sys.argv[1:]:
    f = os.path.join(d, "test.txt")
    m = re.search(r"test accuracy ([0-9.]+)", open(f).read()) if os.path.exists(f) else None
    acc = float(m.group(1)) if m else None
    parts.append(f"{os.path.basename(d)}: " + ("no test evaluation" if acc is None else
                 f"{acc:.2f}%, " + ("met" if acc >= 88 else f"missed by {88 - acc:.2f} points")))
print("goal: at least 88% test accuracy; " + "; ".join(parts))
PY
)

python3 "$EXPERIMENTS_DIR/summarize.py" --experiment fmnist --out "$OUT/results.json" \
  --plot "$OUT/val_accuracy.svg" --table "$OUT/table.md" --majority 10 \
  --title "Sequential Fashion-MNIST (784 pixels): $STEPS steps, $THREADS thread(s) each" \
  --note "sequential Fashion-MNIST from /usr/share/datasets/fashion-mnist: 55000 train / 5000 validation (the last 5000 training images) / 10000 test, pixels /255 one per step; validation curve on the first $((EVAL_BATCHES * 32)) validation images; 'test' is the final checkpoint on the whole test split (megagrad eval --split test); chance 10%" \
  --note "$goal" \
  --note "seed 1, $STEPS steps of batch 32 per run, $THREADS thread(s) per run, JOBS=$JOBS at a time, on a 2-core machine (load average 1/5/15 min at the start: $(cat "$OUT/load_start"), at the end: $(cat "$OUT/load_end"); the runs' own threads count in it, and anything else that ran beside them inflates the wall times)" \
  "${DIRS[@]}"
