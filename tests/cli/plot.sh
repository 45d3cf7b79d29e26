#!/usr/bin/env bash
# `megagrad plot` end to end (run by ctest: tests/cli/plot.sh path/to/megagrad): two tiny runs,
# Mega and the Transformer, overlaid in one SVG; and its errors.
set -uo pipefail
EVAL_EVERY=2 source "$(dirname "$0")/lib.sh" "$1"
"$BIN" --threads 1 train --task listops --config tiny.json --out runs/a > out.txt 2>&1 || { cat out.txt; fail "train mega"; }
"$BIN" --threads 1 train --task listops --config tiny.json --model transformer --out runs/b > out.txt 2>&1 || { cat out.txt; fail "train transformer"; }
grep -q 'majority class (' runs/a/curves.svg || fail "curves.svg has no majority-class line"
"$BIN" plot runs/a runs/b --out both.svg > out.txt 2>&1 || { cat out.txt; fail "plot: exit $?"; }
grep -q "wrote both.svg (2 runs, validation accuracy)" out.txt || { cat out.txt; fail "plot's message"; }
# Labelled by folder name plus the header's model type; both curves of both runs.
for label in "a (mega): train loss, smoothed" "a (mega): validation accuracy" "b (transformer): train loss, smoothed" \
             "b (transformer): validation accuracy" ">100%<"; do
  grep -qF "$label" both.svg || fail "both.svg lacks '$label'"
done
# The runs share their data: one majority-class line, from the metrics headers.
grep -q '"baseline":{' runs/a/metrics.jsonl || fail "the metrics header records no baseline"
n=$(grep -c 'majority class (' both.svg); [ "$n" = 1 ] || fail "both.svg has $n majority-class lines, expected 1"
"$BIN" plot runs/a/metrics.jsonl --metric loss --out loss.svg > out.txt 2>&1 || { cat out.txt; fail "plot a file, --metric loss"; }
grep -qF "a (mega): validation loss" loss.svg || fail "loss.svg lacks the validation loss"
! grep -q 'majority class (' loss.svg || fail "loss.svg draws the accuracy's majority line"
"$BIN" plot > out.txt 2>&1; rc=$?
[ "$rc" = 2 ] || fail "plot without a run: exit $rc, expected 2"
"$BIN" plot runs/nothing > out.txt 2>&1; rc=$?
[ "$rc" = 1 ] && grep -q "\[plot\] runs/nothing: no metrics.jsonl" out.txt || { cat out.txt; fail "plot of a missing run: exit $rc"; }
"$BIN" plot runs/a --metric bpc > out.txt 2>&1; rc=$?
[ "$rc" = 1 ] && grep -q "no run logged a validation bpc" out.txt || { cat out.txt; fail "plot --metric bpc: exit $rc"; }
echo "plot: all checks passed"
