#!/usr/bin/env bash
# `megagrad bench-step` end to end (run by ctest: tests/cli/bench_step.sh path/to/megagrad): a
# tiny Mega, Mega with chunks (L not a multiple of the chunk: padded) and Transformer each time a
# training step at a given length and write the JSON the scaling experiment reads; a length over
# max_positions and a missing --seq-len are usage errors (exit 2). Never checks a speed.
set -uo pipefail
BIN=$(realpath "$1")
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
mkdir tmp
export TMPDIR=$W/tmp  # where bench-step writes its synthetic data (and must delete it)
fail() { echo "FAILED: $*"; exit 1; }
for m in mega chunk transformer; do
  case $m in
    mega) extra='"type": "mega"' ;;
    chunk) extra='"type": "mega", "chunk_size": 16' ;;
    transformer) extra='"type": "transformer"' ;;
  esac
  cat > $m.json <<JSON
{"model": {$extra, "layers": 1, "embed_dim": 16, "hidden_dim": 32, "ffn_hidden_dim": 32, "z_dim": 8, "n_dim": 4,
           "classifier_dim": 16, "max_positions": 64}}
JSON
  "$BIN" bench-step --config $m.json --seq-len 40 --iters 2 --threads 1 --json $m.out.json > $m.txt 2>&1 \
    || { cat $m.txt; fail "$m: exit $?"; }
  grep -q "step ms (median)" $m.txt && grep -q "peak RSS" $m.txt || { cat $m.txt; fail "$m: no timing or memory line"; }
  for k in '"step_ms"' '"forward_ms"' '"backward_ms"' '"optimizer_ms"' '"peak_rss_mib"' '"seq_len": 40' \
           '"batch_size": 1' '"iters": 2' '"threads": 1' '"openblas_core"' '"parameters"'; do
    grep -q "$k" $m.out.json || { cat $m.out.json; fail "$m: $k missing from the JSON"; }
  done
done
grep -q '"chunk_size": 16' chunk.out.json || fail "chunk: chunk_size not recorded"
grep -q '"model": "transformer"' transformer.out.json || fail "transformer: model not recorded"
"$BIN" bench-step --config mega.json --seq-len 65 > out.txt 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "max_positions" out.txt || { cat out.txt; fail "L > max_positions: exit $rc, expected 2 naming max_positions"; }
"$BIN" bench-step --config mega.json > out.txt 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q -- "--seq-len" out.txt || { cat out.txt; fail "no --seq-len: exit $rc, expected 2"; }
[ -z "$(find "$W/tmp" -mindepth 1 -maxdepth 1)" ] || fail "the temporary data folder was left behind: $(ls "$W/tmp")"
echo "bench-step: all checks passed"
