#!/usr/bin/env bash
# Weights in and out end to end (run by ctest: tests/cli/weights_io.sh path/to/megagrad):
# train (4 tiny steps) -> export -> eval --weights (the checkpoint's numbers) -> train --init-from
# (starts from those weights: with lr 0 it keeps them, a fresh start does not), a file from
# elsewhere (no metadata: needs --config, reported unverified; a BF16 copy), and the errors, which
# must name the files and tensors.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$1"
run() { "$BIN" --threads 1 "$@" > out.txt 2> err.txt; echo $?; }
show() { echo "--- stdout"; cat out.txt; echo "--- stderr"; cat err.txt; }
val_line() { grep -E '^val accuracy ' out.txt; }
# The JSON header of a safetensors file (its length is the first 8 bytes, little-endian), into a
# file: grep -q on a pipe would stop reading early, and under pipefail the writer's SIGPIPE would
# fail the check at random.
header_of() { tail -c +9 "$1" | head -c "$(od -An -tu8 -N8 "$1" | tr -d ' ')" > "$2"; }
# The run configuration with its task: what a weights file from elsewhere needs.
sed 's/^{/{"task": "listops", /' tiny.json > model.json

rc=$(run train --task listops --config tiny.json --out runs/a)
[ "$rc" = 0 ] || { show; fail "train: exit $rc"; }
CK=runs/a/checkpoint.safetensors

# export: weights only, with the configuration and the checksum.
rc=$(run export $CK w.safetensors)
[ "$rc" = 0 ] && grep -qE "^megagrad export: [0-9]+ tensors \([0-9]+ values\) of the listops mega model at step 4 -> w.safetensors$" out.txt \
  || { show; fail "export: exit $rc or its message"; }
[ -s w.safetensors ] && [ "$(stat -c %s w.safetensors)" -lt "$(stat -c %s $CK)" ] || fail "w.safetensors is not smaller than the checkpoint"
header_of w.safetensors header.json
for s in '"format":"megagrad-weights-1"' '"checksum":"' '"step":"4"' 'encoder.encoder.layers.0.mega_layer.v_proj.weight' \
         'sentence_projection_layer.weight'; do
  grep -qF "$s" header.json || fail "w.safetensors's header lacks $s"
done
grep -qE '"(model|optim)\.' header.json && fail "w.safetensors holds checkpoint names (model./optim.)"
compgen -G '*.tmp.*' > /dev/null && fail "export left a temp file"

# eval --weights gives the checkpoint's numbers, with no warning (verified).
rc=$(run eval $CK)
[ "$rc" = 0 ] || { show; fail "eval of the checkpoint: exit $rc"; }
want=$(val_line)
[ -n "$want" ] || { show; fail "eval printed no val line"; }
rc=$(run eval --weights w.safetensors)
[ "$rc" = 0 ] || { show; fail "eval --weights: exit $rc"; }
[ "$(val_line)" = "$want" ] || { show; fail "eval --weights: '$(val_line)', the checkpoint gave '$want'"; }
[ -s err.txt ] && { show; fail "eval --weights of an exported file warned"; }

# train --init-from: with lr 0 the run keeps the exported weights, so its checkpoint evaluates as
# they do; a fresh start with lr 0 does not (so this check can fail).
rc=$(run train --task listops --config tiny.json --steps 1 --lr 0 --init-from w.safetensors --out runs/b)
[ "$rc" = 0 ] && grep -q "initialised from w.safetensors" out.txt || { show; fail "train --init-from: exit $rc"; }
head -n 1 runs/b/metrics.jsonl | grep -qE '"init_from":"w.safetensors","init_from_checksum":"[0-9a-f]{16}"' \
  || { head -n 1 runs/b/metrics.jsonl; fail "the metrics header does not name the --init-from file and its checksum"; }
rc=$(run eval runs/b/checkpoint.safetensors)
[ "$rc" = 0 ] && [ "$(val_line)" = "$want" ] || { show; fail "the --init-from run does not start from the weights ('$want')"; }
rc=$(run train --task listops --config tiny.json --steps 1 --lr 0 --out runs/c)
rc=$(run eval runs/c/checkpoint.safetensors)
[ "$rc" = 0 ] && [ "$(val_line)" != "$want" ] || { show; fail "a fresh start evaluates as the trained weights: the check above proves nothing"; }
# ... and then trains on from them (lr > 0).
rc=$(run train --task listops --config tiny.json --init-from w.safetensors --out runs/d)
[ "$rc" = 0 ] || { show; fail "train --init-from (training): exit $rc"; }
# Another model configuration with the same tensors trains, with a warning that names the key.
sed 's/"z_dim": 8,/"z_dim": 8, "attention_activation": "laplace",/' tiny.json > laplace.json
grep -q laplace laplace.json || fail "could not write laplace.json"
rc=$(run train --task listops --config laplace.json --steps 1 --init-from w.safetensors --out runs/e)
[ "$rc" = 0 ] && grep -qF 'model.attention_activation: "softmax" -> "laplace"' err.txt || { show; fail "--init-from into a laplace model: exit $rc or no warning"; }

# A file from elsewhere: no metadata (as tools/convert_fairseq_mega.py writes), and a BF16 copy.
if command -v python3 > /dev/null; then
  python3 - <<'PY' || fail "python3 could not rewrite w.safetensors"
import json, struct
raw = open("w.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
data = raw[8 + n:]
header.pop("__metadata__")
def write(path, header, data):
    text = json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + data)
write("plain.safetensors", header, data)
bf, out = {}, b""
for name, info in header.items():
    b, e = info["data_offsets"]
    words = struct.unpack("<%dI" % ((e - b) // 4), data[b:e])
    chunk = struct.pack("<%dH" % len(words), *[w >> 16 for w in words])
    bf[name] = {"dtype": "BF16", "shape": info["shape"], "data_offsets": [len(out), len(out) + len(chunk)]}
    out += chunk
write("bf16.safetensors", bf, out)
PY
  rc=$(run eval --weights plain.safetensors)
  [ "$rc" = 2 ] && grep -q "plain.safetensors carries no run configuration" err.txt && grep -q -- "--config MODEL.json" err.txt \
    || { show; fail "eval --weights of a file without configuration: exit $rc, expected 2 and the --config hint"; }
  rc=$(run eval --weights plain.safetensors --config model.json)
  [ "$rc" = 0 ] && [ "$(val_line)" = "$want" ] || { show; fail "eval --weights plain --config: exit $rc or other numbers than '$want'"; }
  grep -q "warning: plain.safetensors is unverified" err.txt || { show; fail "a file from elsewhere is not reported unverified"; }
  rc=$(run eval --weights plain.safetensors --config tiny.json)
  [ "$rc" = 1 ] && grep -q 'tiny.json: no "task" in the configuration' err.txt || { show; fail "--config without a task: exit $rc"; }
  rc=$(run eval --weights bf16.safetensors --config model.json)
  [ "$rc" = 0 ] && grep -qE "^megagrad eval: ([0-9]+) of the \1 tensors of bf16.safetensors are BF16 in the file, read as float32$" err.txt \
    && grep -q "unverified" err.txt && val_line > /dev/null || { show; fail "eval --weights of a BF16 file: exit $rc"; }
  rc=$(run train --task listops --config tiny.json --steps 1 --init-from plain.safetensors --out runs/f)
  [ "$rc" = 0 ] && grep -q "warning: plain.safetensors is unverified" err.txt || { show; fail "train --init-from a file from elsewhere: exit $rc"; }
  head -n 1 runs/f/metrics.jsonl | grep -qF '"init_from":"plain.safetensors","init_from_checksum":null' \
    || { head -n 1 runs/f/metrics.jsonl; fail "the metrics header of an unverified --init-from"; }
else
  echo "weights_io: no python3: the checks of a file from elsewhere were skipped"
fi

# A character LM: export keeps its vocabulary, so generate --weights continues a prompt as the
# checkpoint does (same seed, same text).
for i in $(seq 1 40); do echo "the quick brown fox jumps over the lazy dog"; done > text.txt
echo '{"model": {"layers": 1, "embed_dim": 16, "hidden_dim": 32, "ffn_hidden_dim": 32, "z_dim": 8, "n_dim": 4, "chunk_size": 16, "max_positions": 16}, "data": {"seq_len": 32}, "train": {"steps": 3, "batch_size": 4, "warmup": 1, "eval_every": 3, "eval_batches": 1}}' > lm.json
rc=$(run train --task charlm --data text.txt --config lm.json --out runs/lm)
[ "$rc" = 0 ] || { show; fail "train --task charlm: exit $rc"; }
rc=$(run export runs/lm/checkpoint.safetensors lm.safetensors)
[ "$rc" = 0 ] || { show; fail "export of the LM: exit $rc"; }
rc=$(run generate runs/lm/checkpoint.safetensors --prompt "the quick" --length 40 --seed 3)
[ "$rc" = 0 ] || { show; fail "generate from the checkpoint: exit $rc"; }
mv out.txt gen_ckpt.txt
rc=$(run generate --weights lm.safetensors --prompt "the quick" --length 40 --seed 3)
[ "$rc" = 0 ] && cmp -s out.txt gen_ckpt.txt && [ "$(wc -c < out.txt)" -gt 40 ] || { show; cat gen_ckpt.txt; fail "generate --weights: exit $rc or another text than the checkpoint's"; }
rc=$(run generate --weights w.safetensors --prompt "x")
[ "$rc" = 1 ] && grep -q "no run configuration or vocabulary" err.txt || { show; fail "generate --weights of a ListOps file: exit $rc"; }

# Errors name the files and the tensors.
rc=$(run export w.safetensors x.safetensors)
[ "$rc" = 1 ] && grep -q "\[export\] w.safetensors is already a weights file" err.txt || { show; fail "export of a weights file: exit $rc"; }
rc=$(run export tiny.json x.safetensors)
[ "$rc" = 1 ] && grep -q "\[export\] tiny.json" err.txt || { show; fail "export of a JSON file: exit $rc"; }
rc=$(run export $CK $CK)
[ "$rc" = 1 ] && grep -q "is the checkpoint itself" err.txt || { show; fail "export over the checkpoint: exit $rc"; }
[ -e x.safetensors ] && fail "a failed export wrote x.safetensors"
rc=$(run export $CK)
[ "$rc" = 2 ] || { show; fail "export with one argument: exit $rc, expected 2"; }
rc=$(run eval --weights $CK)
[ "$rc" = 1 ] && grep -q "\[eval\] $CK is a training checkpoint" err.txt && grep -q "megagrad export $CK OUT.safetensors" err.txt \
  || { show; fail "eval --weights of a checkpoint: exit $rc"; }
rc=$(run eval $CK --weights w.safetensors)
[ "$rc" = 2 ] || { show; fail "eval with both a checkpoint and --weights: exit $rc, expected 2"; }
rc=$(run eval $CK --config model.json)
[ "$rc" = 2 ] || { show; fail "eval of a checkpoint with --config: exit $rc, expected 2"; }
rc=$(run train --task listops --config tiny.json --resume $CK --init-from w.safetensors)
[ "$rc" = 2 ] || { show; fail "train --resume with --init-from: exit $rc, expected 2"; }
# Missing tensors: a 2-layer model, every tensor of layer 1 named (the list cut after 12).
per_layer=$(grep -o '"encoder\.encoder\.layers\.0\.[^"]*"' header.json | wc -l)
[ "$per_layer" -gt 12 ] || fail "w.safetensors holds $per_layer tensors of layer 0"
echo '{"model": {"layers": 2, "embed_dim": 16, "hidden_dim": 32, "ffn_hidden_dim": 32, "z_dim": 8, "n_dim": 4, "classifier_dim": 16}, "data": {"num_train": 64, "max_len": 40}, "train": {"steps": 1, "batch_size": 8}}' > two.json
rc=$(run train --task listops --config two.json --init-from w.safetensors --out runs/x)
[ "$rc" = 1 ] && grep -qE "\[init-from\] w.safetensors: the tensors do not match the model \([0-9]+ in the file, [0-9]+ in the model\): missing tensors \($per_layer\): encoder.encoder.layers.1\.[a-z_.]+, " err.txt \
  && grep -q "and $((per_layer - 12)) more" err.txt && ! grep -q unexpected err.txt || { show; fail "--init-from into a 2-layer model: exit $rc"; }
[ -e runs/x/checkpoint.safetensors ] && fail "a refused --init-from wrote a checkpoint"
# Unexpected tensors: a postnorm model has no final norm.
sed 's/"layers": 2/"layers": 1, "prenorm": false/' two.json > post.json
rc=$(run train --task listops --config post.json --init-from w.safetensors --out runs/y)
[ "$rc" = 1 ] && grep -q "unexpected tensors (2): encoder.encoder.final_norm.norm.weight, encoder.encoder.final_norm.norm.bias" err.txt \
  && ! grep -q "missing" err.txt || { show; fail "--init-from into a postnorm model: exit $rc"; }
# Shapes: a wider model (--config merged over the file's own configuration).
echo '{"model": {"embed_dim": 24}}' > wide.json
rc=$(run eval --weights w.safetensors --config wide.json)
[ "$rc" = 1 ] && grep -q "shape mismatch ([0-9]*): encoder.encoder.embed_tokens.embed.weight (16,16) in file, (16,24) in model" err.txt \
  && ! grep -qE "missing|unexpected" err.txt || { show; fail "eval --weights into a wider model: exit $rc"; }
# A changed byte is caught by the checksum.
cp w.safetensors flipped.safetensors
size=$(stat -c %s flipped.safetensors)
printf '\x7f' | dd of=flipped.safetensors bs=1 seek=$((size - 3)) conv=notrunc status=none
rc=$(run eval --weights flipped.safetensors)
[ "$rc" = 1 ] && grep -q "\[eval\] flipped.safetensors: checksum mismatch" err.txt || { show; fail "eval --weights of a changed file: exit $rc"; }
rc=$(run train --task listops --config tiny.json --init-from nosuch.safetensors --out runs/z)
[ "$rc" = 1 ] && grep -q "\[init-from\] cannot read nosuch.safetensors" err.txt || { show; fail "--init-from a missing file: exit $rc"; }
[ -e runs/z ] && fail "--init-from a missing file created the run folder"
echo "weights_io: all checks passed"
