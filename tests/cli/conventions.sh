#!/usr/bin/env bash
# The command-line conventions of `megagrad`, end to end (run by ctest: tests/cli/conventions.sh
# path/to/megagrad):
#   1. --version / -V print "megagrad <version>" and exit 0;
#   2. `help` lists the commands, `help <cmd>` is `<cmd> --help`, an unknown command is exit 2;
#   3. `--` ends the options: a checkpoint named -x.safetensors is read after it, refused before it;
#   4. one number format: losses 4 decimals, accuracy 2 decimals and %, bpc 3 decimals, seconds 1;
#   5. the progress bar fits the terminal (a pty of 40 and of 120 columns; $COLUMNS when the pty
#      has no size) and never wraps;
#   6. gradcheck --json is one JSON object that agrees with the table's verdict.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$1"
# Exit status of megagrad; stdout in out.txt, stderr in err.txt.
run() { "$BIN" --threads 1 "$@" > out.txt 2> err.txt; echo $?; }
show() { echo "--- stdout"; cat out.txt; echo "--- stderr"; cat err.txt; }

# 1. Version.
for v in --version -V; do
  rc=$(run $v)
  [ "$rc" = 0 ] && grep -qxE 'megagrad [0-9]+\.[0-9]+\.[0-9]+' out.txt || { show; fail "$v: exit $rc"; }
done
version=$(cat out.txt)
rc=$(run --help)
[ "$rc" = 0 ] && head -n 1 out.txt | grep -qF "$version:" || { show; fail "--help does not show the version $version"; }

# 2. help.
rc=$(run help)
[ "$rc" = 0 ] || { show; fail "help: exit $rc"; }
for c in train eval export generate info gradcheck demo ref-check bench-layer bench-step; do
  grep -qE "^  $c " out.txt || { show; fail "help does not list $c"; }
done
for c in train eval export gradcheck; do
  rc=$(run help $c)
  [ "$rc" = 0 ] || { show; fail "help $c: exit $rc"; }
  mv out.txt help.txt
  rc=$(run $c --help)
  [ "$rc" = 0 ] && cmp -s out.txt help.txt && grep -q "usage: megagrad $c" out.txt \
    || { show; fail "help $c differs from $c --help"; }
done
rc=$(run help nosuch)
[ "$rc" = 2 ] && grep -q "unknown command 'nosuch'" err.txt && [ ! -s out.txt ] || { show; fail "help nosuch: exit $rc, expected 2"; }
rc=$(run help train eval)
[ "$rc" = 2 ] && grep -q "expects one command name" err.txt || { show; fail "help train eval: exit $rc, expected 2"; }
rc=$(run nosuch)
[ "$rc" = 2 ] && grep -q "unknown command 'nosuch'" err.txt || { show; fail "nosuch: exit $rc, expected 2"; }
rc=$(run train --nosuch)
[ "$rc" = 2 ] && grep -q "unknown option '--nosuch'" err.txt || { show; fail "train --nosuch: exit $rc, expected 2"; }
rc=$(run --nosuch)
[ "$rc" = 2 ] || { show; fail "--nosuch: exit $rc, expected 2"; }

# 3. and 4.: a tiny ListOps run (log lines, as stdout is a file), then eval of its checkpoint.
rc=$(run train --task listops --config tiny.json --out R)
[ "$rc" = 0 ] || { show; fail "tiny train: exit $rc"; }
num='[0-9]+'
grep -qE "^step 2/4  loss $num\.[0-9]{4}  accuracy $num\.[0-9]{2}%  lr " out.txt || { show; fail "the progress line's numbers"; }
grep -qE "^step 4: validation loss $num\.[0-9]{4}, accuracy $num\.[0-9]{2}%$" out.txt || { show; fail "the evaluation line's numbers"; }
grep -qE "^steps 4 in $num\.[0-9] s: $num tokens/s" out.txt || { show; fail "the summary's time"; }
grep -qE "^validation accuracy $num\.[0-9]{2}% \(loss $num\.[0-9]{4}, $num predictions\)$" out.txt \
  || { show; fail "the summary's accuracy and loss"; }
cp R/checkpoint.safetensors ./-x.safetensors
rc=$(run eval -x.safetensors)
[ "$rc" = 2 ] && grep -q "unknown option '-x.safetensors'" err.txt && grep -q "put -- before it" err.txt \
  || { show; fail "eval -x.safetensors: exit $rc, expected 2 and the hint"; }
rc=$(run eval -- -x.safetensors)
[ "$rc" = 0 ] || { show; fail "eval -- -x.safetensors: exit $rc"; }
grep -qE "^val accuracy $num\.[0-9]{2}% \(loss $num\.[0-9]{4}, $num predictions\)$" out.txt || { show; fail "eval's numbers"; }
rc=$(run eval -- -x.safetensors --split test)
[ "$rc" = 2 ] && grep -q "unexpected argument '--split'" err.txt || { show; fail "an option after --: exit $rc, expected 2"; }
rc=$(run eval -- -nosuch.safetensors)
[ "$rc" = 1 ] && grep -q -- "-nosuch.safetensors" err.txt || { show; fail "eval -- of a missing file: exit $rc, expected 1"; }

# bpc: a tiny character LM.
for i in $(seq 1 200); do echo "In the beginning was the word, line $i."; done > corpus.txt
cat > tiny_lm.json <<'JSON'
{"model": {"layers": 1, "embed_dim": 16, "hidden_dim": 32, "ffn_hidden_dim": 32, "z_dim": 8, "n_dim": 4,
           "chunk_size": 16, "max_positions": 16},
 "data": {"seq_len": 16, "val_fraction": 0.1},
 "train": {"steps": 2, "batch_size": 4, "warmup": 1, "log_every": 1, "eval_every": 2, "eval_batches": 2,
           "checkpoint_every": 2}}
JSON
rc=$(run train --task charlm --data corpus.txt --config tiny_lm.json --out LM)
[ "$rc" = 0 ] || { show; fail "tiny charlm: exit $rc"; }
grep -qE "^step 1/2  loss $num\.[0-9]{4}  bpc $num\.[0-9]{3}  lr " out.txt || { show; fail "the charlm progress line's numbers"; }
grep -qE "^validation bpc $num\.[0-9]{3} \(loss $num\.[0-9]{4}, $num predictions\)$" out.txt || { show; fail "the charlm summary"; }

# 5. The progress bar on a terminal: script(1) gives the program a pty. Every redraw (between
# \r and the next \r or \n, after the erase-line code) must be narrower than the terminal.
command -v script > /dev/null || fail "script(1) is missing (Debian: bsdutils)"
bar_check() {  # COLS SETUP: runs a 40-step tiny run in a pty; checks its redraws
  local cols=$1 setup=$2
  sed 's/"steps": 4,/"steps": 40,/' tiny.json > tiny40.json
  rm -rf P
  script -qec "$setup; '$BIN' --threads 1 train --task listops --config tiny40.json --out P" /dev/null < /dev/null > pty.txt 2>&1
  [ -f P/checkpoint.safetensors ] || { cat pty.txt; fail "the run in a pty ($setup) did not finish"; }
  python3 - "$cols" pty.txt <<'PY' || fail "progress bar at $cols columns ($setup)"
import re, sys
cols, text = int(sys.argv[1]), open(sys.argv[2], encoding="utf-8", errors="replace", newline="").read()
# The pty turns \n into \r\n: a redraw is a piece between two \r that starts with the erase code.
pieces = [p.split("\n")[0] for p in text.split("\r")[1:]]
bars = [p[3:] for p in pieces if p.startswith("\x1b[K") and re.match(r"(\[[#.]+\] )?\d+/40\b", p[3:])]
if not bars:
    sys.exit(f"no redraw of the bar in: {text[:500]!r}")
for b in bars:
    if len(b) > cols - 1:
        sys.exit(f"a redraw of {len(b)} characters on {cols} columns: {b!r}")
last = bars[-1]
if "40/40" not in last:
    sys.exit(f"the last redraw is not 40/40: {last!r}")
if cols >= 120 and not ("tok/s" in last and "ETA" in last and last.startswith("[")):
    sys.exit(f"{cols} columns leave room for every field and the bar: {last!r}")
if cols <= 40 and "tok/s" in last:
    sys.exit(f"tok/s should go first on {cols} columns: {last!r}")
print(f"{cols} columns: {last!r}")
PY
}
bar_check 40 "stty cols 40 rows 20"
bar_check 120 "stty cols 120 rows 20"
bar_check 50 "stty cols 0 rows 0; export COLUMNS=50"

# 6. gradcheck --json.
rc=$(run gradcheck --json --filter tanh)
[ "$rc" = 0 ] || { show; fail "gradcheck --json: exit $rc"; }
python3 - out.txt "$version" <<'PY' || fail "gradcheck --json output"
import json, sys
r = json.load(open(sys.argv[1]))
assert "megagrad " + r["version"] == sys.argv[2], r["version"]
assert r["passed"] is True and r["cases_failed"] == 0, r
assert r["cases_run"] == len(r["cases"]) == r["cases_passed"] > 0, r
for c in r["cases"]:
    assert "tanh" in c["op"] or "tanh" in c["case"], c
    assert c["passed"] is True and 0 <= c["max_error"] <= c["tolerance"], c
PY
rc=$(run gradcheck --filter tanh)
[ "$rc" = 0 ] && grep -q "gradcheck: PASS" out.txt || { show; fail "gradcheck table: exit $rc"; }
rc=$(run gradcheck --json --filter nosuchop)
[ "$rc" = 2 ] && [ ! -s out.txt ] || { show; fail "gradcheck --json --filter nosuchop: exit $rc, expected 2"; }
echo "conventions: all checks passed"
