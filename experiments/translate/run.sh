#!/usr/bin/env bash
# Spanish -> English translation of the Bible (issue 14): MegaSeq2Seq against the Transformer
# encoder-decoder built from the same library parts, at about equal parameters (1.56 M vs 1.44 M)
# and equal steps, batch, learning-rate schedule and data, side by side (one thread each).
# Each final checkpoint is scored on the test split (John, 879 verses) with corpus BLEU (13a) and
# chrF2 at beam 4 and at beam 1 (greedy), and translates five fixed test verses.
#
#   experiments/translate/run.sh OUT_DIR          # ~50 min on 2 cores (JOBS=2, THREADS=1)
#   TINY=1 experiments/translate/run.sh OUT_DIR   # a few steps and sentences, for CI
#   STEPS=N EVAL_EVERY=N ...                      # another budget
#
# Leaves OUT_DIR/mega/ and OUT_DIR/transformer/ (run_one folders: checkpoint.safetensors,
# metrics.jsonl, curves.svg, train.log, config.json; test.txt: eval --split test at beam 4;
# test_beam1.txt: at beam 1; examples.tsv: five test verses, examples.txt: their translations at beam 4), and
# OUT_DIR/results.json, OUT_DIR/table.md, OUT_DIR/examples.md, OUT_DIR/val_accuracy.svg.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../lib.sh" "$@"  # checks OUT_DIR: sets OUT, and TINY
STEPS="${STEPS:-4000}"
EVAL_EVERY="${EVAL_EVERY:-500}"
SENTENCES=""  # eval scores the whole test split
# The example verses: test.tsv lines fixed before any run (spread over John, not picked by score).
EXAMPLE_LINES="1 100 300 500 800"
if [ "$TINY" = 1 ]; then STEPS=3; EVAL_EVERY=3; SENTENCES="--sentences 5"; fi
mkdir -p "$OUT"
[ ! -e "$OUT/results.json" ] || { echo "experiments: $OUT already holds results: give run.sh a fresh OUT_DIR" >&2; exit 2; }
cut -d' ' -f1-3 /proc/loadavg > "$OUT/load_start"  # the machine's load (1/5/15-min averages): it is shared
echo "{\"train\": {\"steps\": $STEPS, \"eval_every\": $EVAL_EVERY, \"checkpoint_every\": $EVAL_EVERY, \"seed\": 1}}" \
  > "$OUT/config.json"

# The test split as the training run caches it ($MEGAGRAD_CACHE, else XDG/HOME, as mega/data/text.cpp).
cache="${MEGAGRAD_CACHE:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/megagrad}}"
cache="${cache:-${HOME:+$HOME/.cache/megagrad}}"
cache="${cache:-/tmp/megagrad-cache}"
test_tsv="$cache/bible/spaRV1909eb-engKJV2006eb-Mark-John/test.tsv"

# One model: train, score the test split at beam 4 and beam 1, translate the example verses.
run_model() {
  local model=$1 dir="$OUT/$1"
  run_one "$dir" "$model" 0 --task translate --model "$model" --config "$OUT/config.json" || return 1
  local ckpt="$dir/checkpoint.safetensors" beam
  for beam in 4 1; do
    local f="$dir/test.txt"
    [ "$beam" = 4 ] || f="$dir/test_beam$beam.txt"
    # shellcheck disable=SC2086  # SENTENCES is empty or two words
    "$MEGAGRAD" eval "$ckpt" --split test --beam "$beam" $SENTENCES --threads "$THREADS" > "$f" 2>&1 || {
      echo "experiments: eval of $model at beam $beam failed (see $f)" >&2; return 1; }
  done
  local n
  for n in $EXAMPLE_LINES; do sed -n "${n}p" "$test_tsv"; done > "$dir/examples.tsv"
  cut -f1 "$dir/examples.tsv" | "$MEGAGRAD" translate "$ckpt" --beam 4 --threads "$THREADS" \
    > "$dir/examples.txt" 2> "$dir/examples.log" || {
    echo "experiments: translate with $model failed (see $dir/examples.log)" >&2; return 1; }
  echo "experiments: $model: $(grep -E '^test (BLEU|chrF2)' "$dir/test.txt" | tr '\n' ' ')"
}

printf 'run_model mega\nrun_model transformer\n' | run_queue
cut -d' ' -f1-3 /proc/loadavg > "$OUT/load_end"

python3 "$EXPERIMENTS_DIR/summarize.py" --experiment translate --out "$OUT/results.json" \
  --plot "$OUT/val_accuracy.svg" --table "$OUT/table.md" \
  --title "Spanish -> English Bible: Mega vs Transformer, $STEPS steps of batch 64, one thread each" \
  --note "the Bible, Spanish (Reina-Valera 1909) -> English (KJV), Debian's SWORD modules: 29,527 training verses, Mark (678) validation, John (879) test; a joint unigram SentencePiece vocabulary of 4000 pieces trained on the training split; validation curve: token accuracy (label-smoothed cross-entropy 0.1)" \
  --note "seed 1, $STEPS steps of batch 64 per run, lr 2e-3 (warmup 300, linear decay), one thread each ($THREADS), JOBS=$JOBS at a time, on a 2-core machine (load average 1/5/15 min at the start: $(cat "$OUT/load_start"), at the end: $(cat "$OUT/load_end"))" \
  "$OUT/mega" "$OUT/transformer" > /dev/null
python3 "$HERE/summarize_translate.py" "$OUT"
