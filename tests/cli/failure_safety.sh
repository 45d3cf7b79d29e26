#!/usr/bin/env bash
# The failure-safety rules of `megagrad train/eval`, end to end through the program, as a user
# meets them (run by ctest: tests/cli/failure_safety.sh path/to/megagrad).
#   1. A second `train` into a folder that holds a run exits 2 and names --resume and --force.
#   2. A diverging run resumed there (lr 1e30, no clipping, a checkpoint every step) stops with
#      exit 1, names the checkpoint it resumed from as the last good one, and leaves it byte for byte.
#   3. `eval` and `--resume` refuse a checkpoint whose metadata was edited (exit 1).
#   4. --force moves the old run aside to DIR.old-<time>/.
#   5. --show-config refuses an invalid configuration instead of printing it back.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$1"
run() { "$BIN" --threads 1 "$@" > out.txt 2>&1; echo $?; }

rc=$(run train --task listops --config tiny.json --out R)
[ "$rc" = 0 ] || { cat out.txt; fail "first run: exit $rc"; }
[ -f R/checkpoint.safetensors ] || fail "no checkpoint"
cp R/checkpoint.safetensors good.safetensors

rc=$(run train --task listops --config tiny.json --out R --lr 1e30)
[ "$rc" = 2 ] || { cat out.txt; fail "second run into R: exit $rc, expected 2"; }
grep -q "already holds a run" out.txt && grep -q -- "--resume" out.txt && grep -q -- "--force" out.txt \
  || { cat out.txt; fail "the refusal does not name the ways out"; }
cmp -s R/checkpoint.safetensors good.safetensors || fail "the refused run changed the checkpoint"

sed 's/"steps": 4,/"steps": 40,/; s/"warmup": 1,/"warmup": 0, "clip": 0,/; s/"checkpoint_every": 2/"checkpoint_every": 1/' tiny.json > tiny_div.json
grep -q '"steps": 40' tiny_div.json && grep -q '"clip": 0' tiny_div.json || fail "could not write the diverging config"
rc=$(run train --task listops --config tiny_div.json --resume R/checkpoint.safetensors --lr 1e30)
[ "$rc" = 1 ] || { cat out.txt; fail "the diverging run: exit $rc, expected 1"; }
grep -q "The last good checkpoint is R/checkpoint.safetensors" out.txt \
  || { cat out.txt; fail "the diverging run does not name the checkpoint it resumed from"; }
cmp -s R/checkpoint.safetensors good.safetensors || fail "the diverging run overwrote the good checkpoint"

# Edit the stored step (same length): refused by eval and --resume.
LC_ALL=C sed 's/"step":"4"/"step":"3"/' good.safetensors > edited.safetensors
cmp -s edited.safetensors good.safetensors && fail "the edit did not change the file"
rc=$(run eval edited.safetensors)
[ "$rc" = 1 ] && grep -q "checksum mismatch" out.txt || { cat out.txt; fail "eval of an edited checkpoint: exit $rc"; }
mkdir E && cp edited.safetensors E/checkpoint.safetensors
rc=$(run train --task listops --config tiny.json --resume E/checkpoint.safetensors)
[ "$rc" = 1 ] && grep -q "checksum mismatch" out.txt || { cat out.txt; fail "--resume of an edited checkpoint: exit $rc"; }
rc=$(run eval good.safetensors)
[ "$rc" = 0 ] || { cat out.txt; fail "eval of the good checkpoint: exit $rc"; }

rc=$(run train --task listops --config tiny.json --out R --force)
[ "$rc" = 0 ] || { cat out.txt; fail "--force: exit $rc"; }
old=$(ls -d R.old-* | head -n 1)
[ -n "$old" ] && cmp -s "$old/checkpoint.safetensors" good.safetensors || fail "--force did not keep the old run in R.old-<time>"
grep -q "moved the old run" out.txt || fail "--force does not say where the old run went"
# --show-config validates before it prints.
rc=$(run train --task listops --show-config --lr -1)
[ "$rc" = 1 ] && grep -q "train.lr" out.txt && ! grep -q '"model"' out.txt || { cat out.txt; fail "--show-config printed an invalid configuration: exit $rc"; }
echo "failure safety: all checks passed"
