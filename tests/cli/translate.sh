#!/usr/bin/env bash
# Translation end to end (run by ctest: tests/cli/translate.sh path/to/megagrad): a few training
# steps on a tiny user TSV, `megagrad translate` (greedy and beam, --text and standard input),
# `megagrad eval --split test` with BLEU and chrF, and every bad-input message. Skipped (exit 77)
# in a build without SentencePiece.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$1"
"$BIN" info 2>/dev/null | grep -qi "sentencepiece.*not built\|without sentencepiece" && { echo "skipped: no SentencePiece"; exit 77; }
subj_es=("el perro" "el gato" "la niña" "el hombre" "la mujer"); subj_en=("the dog" "the cat" "the girl" "the man" "the woman")
verb_es=(come duerme corre canta "bebe agua" lee camina habla); verb_en=(eats sleeps runs sings "drinks water" reads walks speaks)
for i in $(seq 0 39); do
  s=$((i % 5)); v=$(((i / 5 + i) % 8))
  printf '%s %s hoy.\t%s %s today.\n' "${subj_es[$s]}" "${verb_es[$v]}" "${subj_en[$s]}" "${verb_en[$v]}"
done > pairs.tsv
cut -f1 pairs.tsv > src.txt; cut -f2 pairs.tsv > tgt.txt
cat > tr.json <<JSON
{"model": {"layers": 1, "embed_dim": 16, "hidden_dim": 32, "ffn_hidden_dim": 32, "z_dim": 8, "n_dim": 4,
           "max_positions": 24, "heads": 2, "transformer_ffn_dim": 32},
 "data": {"valid_size": 4, "test_size": 4, "vocab_size": 48},
 "train": {"steps": 4, "batch_size": 8, "warmup": 1, "log_every": 2, "eval_every": 4, "checkpoint_every": 4}}
JSON
"$BIN" train --task translate --show-config > out.txt 2>&1 || { cat out.txt; fail "show-config"; }
grep -q '"vocab_size": 4000' out.txt && grep -q '"label_smoothing": 0.1' out.txt && grep -q '"truncate": false' out.txt \
  || { cat out.txt; fail "show-config lacks the translate defaults"; }
"$BIN" --threads 1 train --task translate --data pairs.tsv --config tr.json --out runs/tsv > out.txt 2>&1 \
  || { cat out.txt; fail "train on a TSV"; }
grep -q "validation accuracy" out.txt && grep -q "32 train / 4 val / 4 test pairs" out.txt || { cat out.txt; fail "train's report"; }
[ -f runs/tsv/tokenizer.model ] && [ -f runs/tsv/tokenizer.json ] || fail "no tokenizer cached in the run folder"
"$BIN" --threads 1 train --task translate --data src.txt tgt.txt --config tr.json --model transformer --out runs/txt > out.txt 2>&1 \
  || { cat out.txt; fail "train the Transformer on SRC.txt TGT.txt"; }
CK=runs/tsv/checkpoint.safetensors
"$BIN" --threads 1 translate $CK --text "el perro come hoy." --beam 1 > out.txt 2>err.txt || { cat out.txt err.txt; fail "translate greedy"; }
[ "$(wc -l < out.txt)" = 1 ] || { cat out.txt; fail "translate --text: expected one line"; }
printf 'el gato duerme hoy.\nla mujer lee hoy.\n' | "$BIN" --threads 1 translate $CK --beam 3 > out.txt 2>err.txt \
  || { cat out.txt err.txt; fail "translate stdin with beam 3"; }
[ "$(wc -l < out.txt)" = 2 ] || { cat out.txt; fail "translate stdin: expected two lines"; }
"$BIN" --threads 1 eval $CK --split test --beam 2 > out.txt 2>&1 || { cat out.txt; fail "eval --split test"; }
grep -q "^test accuracy" out.txt && grep -q "^test BLEU = " out.txt && grep -q "^test chrF2 = " out.txt \
  || { cat out.txt; fail "eval prints no loss, BLEU or chrF"; }
# Bad input.
"$BIN" translate $CK --text "" > out.txt 2>err.txt; rc=$?
[ "$rc" = 1 ] && grep -qF "[translate] --text: the source is empty: nothing to translate" err.txt || { cat err.txt; fail "empty source: exit $rc"; }
printf 'el perro come hoy.\n\n' | "$BIN" translate $CK > out.txt 2>err.txt; rc=$?
[ "$rc" = 1 ] && grep -qF "[translate] standard input, line 2: the source is empty" err.txt && [ ! -s out.txt ] \
  || { cat out.txt err.txt; fail "empty line 2: exit $rc"; }
long=$(printf 'perro gato %.0s' $(seq 1 30))
"$BIN" translate $CK --text "$long" > out.txt 2>err.txt; rc=$?
[ "$rc" = 1 ] && grep -q "\[translate\] --text: the source is [0-9]* subword tokens with eos, longer than the model's 24 positions" err.txt \
  || { cat err.txt; fail "too long a source: exit $rc"; }
"$BIN" --threads 1 translate $CK --text "el perro ☃ come" > out.txt 2>err.txt; rc=$?
[ "$rc" = 0 ] && grep -q "unknown to the subword model, translated as <unk>: .*☃" err.txt || { cat out.txt err.txt; fail "unseen character: exit $rc"; }
"$BIN" --threads 1 train --task listops --config tiny.json --out runs/lo > out.txt 2>&1 || { cat out.txt; fail "train listops"; }
"$BIN" translate runs/lo/checkpoint.safetensors --text "hola" > out.txt 2>err.txt; rc=$?
[ "$rc" = 1 ] && grep -qF "a 'listops' checkpoint, not a translation model" err.txt || { cat err.txt; fail "listops checkpoint: exit $rc"; }
# A training sentence longer than the positions: refused before any run file is written.
sed 's/"max_positions": 24/"max_positions": 4/' tr.json > short.json
"$BIN" --threads 1 train --task translate --data pairs.tsv --config short.json --out runs/short > out.txt 2>&1; rc=$?
[ "$rc" = 1 ] && grep -q "pairs.tsv:1: the source is [0-9]* subword tokens with eos, longer than the model's 4 positions" out.txt \
  && [ ! -f runs/short/metrics.jsonl ] || { cat out.txt; ls runs/short; fail "too long a training pair: exit $rc"; }
"$BIN" translate $CK --beam 0 --text "hola" > out.txt 2>err.txt; rc=$?
[ "$rc" = 2 ] || { cat err.txt; fail "--beam 0: exit $rc, expected 2"; }
"$BIN" eval runs/lo/checkpoint.safetensors --beam 2 > out.txt 2>err.txt; rc=$?
[ "$rc" = 2 ] && grep -q "is for translate checkpoints" err.txt || { cat err.txt; fail "eval --beam on listops: exit $rc"; }
echo "translate: all checks passed"
