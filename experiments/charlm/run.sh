#!/usr/bin/env bash
# The KJV character LM: Mega (MegaLM) against a causal Transformer decoder (TransformerLM) of
# equal size (parameters within 5%), the same steps, batch, windows and data, side by side (one
# thread each), beside what xz -9 and bzip2 -9 achieve on the same validation text.
#
#   experiments/charlm/run.sh OUT_DIR          # ~60 min on 2 busy cores (JOBS=2, THREADS=1)
#   TINY=1 experiments/charlm/run.sh OUT_DIR   # a few steps, for CI
#   STEPS=N EVAL_EVERY=N ...                   # another budget
#   MODELS=mega STEPS=8000 EVAL_EVERY=500 THREADS=2 JOBS=1   # Mega alone, longer (results_8000steps.json)
#
# Leaves OUT_DIR/mega/ and OUT_DIR/transformer/ (checkpoint.safetensors, metrics.jsonl,
# curves.svg, train.log, config.json; val.txt: megagrad eval on the whole validation split;
# sample1.txt, sample2.txt: megagrad generate), and OUT_DIR/results.json, OUT_DIR/table.md, OUT_DIR/val_bpc.svg.
# The corpus is the default one (the KJV Bible from Debian's bible-kjv, the last 5% validation);
# CORPUS=FILE uses another text. The models are mega.json and transformer.json next to this script.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../lib.sh" "$@"  # checks OUT_DIR: sets OUT, and TINY
STEPS="${STEPS:-2000}"
EVAL_EVERY="${EVAL_EVERY:-250}"
EVAL_BATCHES="${EVAL_BATCHES:-16}"  # per evaluation during training; val.txt is the whole split
SEED="${SEED:-1}"
MODELS="${MODELS:-mega transformer}"  # a subset runs only those (their files next to this script)
SAMPLE_LEN=400
DATA='{}'
[ -n "${CORPUS:-}" ] && DATA="{\"file\": \"$CORPUS\"}"
# TINY: 3 steps, and the last 0.5% as validation, so that the final whole-split eval is short.
if [ "$TINY" = 1 ]; then STEPS=3; EVAL_EVERY=3; EVAL_BATCHES=1; SAMPLE_LEN=20; DATA='{"val_fraction": 0.005}'; fi
mkdir -p "$OUT"

config_for() {  # model: its file, then the budget, merged into one --config file
  python3 - "$HERE/$1.json" "$DATA" > "$OUT/config-$1.json" <<PY
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg.setdefault("data", {}).update(json.loads(sys.argv[2]))
cfg.setdefault("train", {}).update({"steps": $STEPS, "eval_every": $EVAL_EVERY, "checkpoint_every": $EVAL_EVERY,
                                   "eval_batches": $EVAL_BATCHES, "seed": $SEED})
print(json.dumps(cfg, indent=1))
PY
}

# One model: train, evaluate the final checkpoint on the whole validation split, generate samples.
run_model() {
  local model=$1 dir="$OUT/$1"
  run_one "$dir" "$model" 0 --task charlm --config "$OUT/config-$model.json" || return 1
  "$MEGAGRAD" eval "$dir/checkpoint.safetensors" --split val --threads "$THREADS" > "$dir/val.txt" 2>&1 || {
    echo "experiments: eval of $model failed (see $dir/val.txt)" >&2; return 1; }
  local i=0 prompt
  for prompt in "In the beginning" "  3 And the LORD said unto Moses,"; do
    i=$((i + 1))
    "$MEGAGRAD" generate "$dir/checkpoint.safetensors" --prompt "$prompt" --length "$SAMPLE_LEN" \
      --temperature 0.8 --seed "$i" --threads "$THREADS" > "$dir/sample$i.txt" 2>&1 || {
      echo "experiments: generate with $model failed (see $dir/sample$i.txt)" >&2; return 1; }
  done
  echo "experiments: $model: $(grep -E '^val' "$dir/val.txt")"
}

DIRS=()
for m in $MODELS; do
  [ -f "$HERE/$m.json" ] || { echo "experiments: no model $HERE/$m.json" >&2; exit 2; }
  config_for "$m"
  DIRS+=("$OUT/$m")
done
for m in $MODELS; do echo "run_model $m"; done | run_queue
python3 "$HERE/summarize_charlm.py" --out "$OUT/results.json" --plot "$OUT/val_bpc.svg" --table "$OUT/table.md" \
  --title "KJV characters: ${MODELS// / vs }, $STEPS steps of batch 16 x 256" \
  --note "corpus: $( [ -n "${CORPUS:-}" ] && echo "$CORPUS" || echo "the KJV Bible (bible-kjv, bible -l79), the end of the text (data.val_fraction) is validation" ); training windows of 256 characters at random starts; curves: the first $EVAL_BATCHES batches of 16 windows of the validation split; final: the whole split (megagrad eval)" \
  "${DIRS[@]}"
