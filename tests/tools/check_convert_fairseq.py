#!/usr/bin/env python3
"""tools/convert_fairseq_mega.py end to end (run by ctest: tests/tools/check_convert_fairseq.py
path/to/megagrad, under a Python with torch; without torch it runs itself again under
$MEGAGRAD_TEST_TORCH_PYTHON when that is set, else exits 77, which ctest shows as skipped).

Builds fairseq-layout checkpoints itself: the official modules' parameter names and shapes
(MegaLRAEncoder + LRAModel's head, MegaDecoderNoCrossAttn; written from the official code, not
from megagrad), saved with torch.save as fairseq does ({"args": Namespace, "model": state_dict,
...}). Then:
- an unknown key is refused, naming it, until --drop names it; a translation-model key is refused;
- the converted file holds the same names and bits (F32, and F16 kept as F16);
- --print-config gives the sizes the checkpoint was built with;
- megagrad eval --weights FILE --config MODEL.json loads it (reported unverified), a wrong
  configuration is refused naming the tensors;
- train --init-from (lr 0) then export gives back every tensor bit for bit: the names reached the
  right parameters.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
CONVERTER = os.path.join(HERE, "..", "..", "tools", "convert_fairseq_mega.py")


def fail(msg):
    print(f"FAILED: {msg}")
    sys.exit(1)


def run(cmd, cwd, expect=0):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if expect is not None and p.returncode != expect:
        fail(f"{' '.join(cmd)}: exit {p.returncode}, expected {expect}\n--- stdout\n{p.stdout}--- stderr\n{p.stderr}")
    return p


def read_safetensors(path):
    """{name: (dtype code, shape, bytes)} and the metadata, read by hand."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}, meta


def official_layer(torch, prefix, D, H, Z, N, F, max_positions, bidirectional):
    """One MegaSentenceEncoderLayer / MegaDecoderLayer's parameters, from the official modules:
    MovingAverageGatedAttention (norm, move = MultiHeadEMA, v_proj, mx_proj, h_proj, gamma, beta,
    SimpleRelativePositionalBias) and NormalizedFeedForwardNetwork (norm, fc1, fc2), layernorm."""
    E = 2 * D if bidirectional else D  # MultiHeadEMA's kernel_dim
    shapes = {
        "mega_layer.norm.norm.weight": [D], "mega_layer.norm.norm.bias": [D],
        "mega_layer.move.delta": [E, N, 1], "mega_layer.move.alpha": [E, N, 1], "mega_layer.move.beta": [E, N, 1],
        "mega_layer.move.gamma": [E, N], "mega_layer.move.omega": [D],
        "mega_layer.v_proj.weight": [H, D], "mega_layer.v_proj.bias": [H],
        "mega_layer.mx_proj.weight": [Z + H + 2 * D, D], "mega_layer.mx_proj.bias": [Z + H + 2 * D],
        "mega_layer.h_proj.weight": [D, H], "mega_layer.h_proj.bias": [D],
        "mega_layer.gamma": [2, Z], "mega_layer.beta": [2, Z],
        "mega_layer.rel_pos_bias.rel_pos_bias": [2 * max_positions - 1],
        "nffn.norm.norm.weight": [D], "nffn.norm.norm.bias": [D],
        "nffn.fc1.weight": [F, D], "nffn.fc1.bias": [F], "nffn.fc2.weight": [D, F], "nffn.fc2.bias": [D],
    }
    return {prefix + k: torch.randn(s) * 0.1 for k, s in shapes.items()}


def lra_checkpoint(torch, sizes, vocab, classes):
    D, H, Z, N, F, P, L, C = (sizes[k] for k in ("embed_dim", "hidden_dim", "z_dim", "n_dim", "ffn_hidden_dim",
                                                  "max_positions", "layers", "classifier_dim"))
    sd = {"encoder.encoder.embed_tokens.embed.weight": torch.randn(vocab, D) * D ** -0.5}
    for i in range(L):
        sd.update(official_layer(torch, f"encoder.encoder.layers.{i}.", D, H, Z, N, F, P, True))
    sd["encoder.encoder.final_norm.norm.weight"] = torch.randn(D)
    sd["encoder.encoder.final_norm.norm.bias"] = torch.randn(D)
    sd["classifier.0.0.weight"] = torch.randn(C, D)
    sd["classifier.0.0.bias"] = torch.randn(C)
    sd["sentence_projection_layer.weight"] = torch.randn(classes, C)
    return sd


def lm_checkpoint(torch, sizes, vocab):
    D, H, Z, N, F, P, L = (sizes[k] for k in ("embed_dim", "hidden_dim", "z_dim", "n_dim", "ffn_hidden_dim",
                                               "max_positions", "layers"))
    sd = {"decoder.version": torch.Tensor([3]), "decoder.embed_tokens.weight": torch.randn(vocab, D)}
    for i in range(L):
        sd.update(official_layer(torch, f"decoder.layers.{i}.", D, H, Z, N, F, P, False))
    sd["decoder.final_norm.norm.weight"] = torch.randn(D)
    sd["decoder.final_norm.norm.bias"] = torch.randn(D)
    sd["decoder.output_projection.weight"] = torch.randn(vocab, D)
    return sd


def save_fairseq(torch, path, sd, **args):
    torch.save({"args": argparse.Namespace(**args), "model": sd, "optimizer_history": [{"num_updates": 10}],
                "extra_state": {"epoch": 1}}, path)


def check_same(torch, got, sd, dtype_code, what):
    if sorted(got) != sorted(sd):
        fail(f"{what}: names differ: only in the file {sorted(set(got) - set(sd))}, only in the checkpoint "
             f"{sorted(set(sd) - set(got))}")
    for k, t in sd.items():
        code, shape, b = got[k]
        want = t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        if code != dtype_code or shape != list(t.shape) or b != want:
            fail(f"{what}: {k} is {code} {shape} with other bytes than the checkpoint's {dtype_code} {list(t.shape)}")


def main():
    if len(sys.argv) != 2:
        print("usage: check_convert_fairseq.py path/to/megagrad")
        return 2
    binary = os.path.realpath(sys.argv[1])
    try:
        import torch
    except ImportError as e:
        other = os.environ.get("MEGAGRAD_TEST_TORCH_PYTHON", "")
        if other and os.path.realpath(other) != os.path.realpath(sys.executable) and os.access(other, os.X_OK):
            os.execv(other, [other, os.path.abspath(__file__), binary])  # the environment's Python with torch
        print(f"SKIPPED: this Python ({sys.executable}) has no torch ({e}); point MEGAGRAD_TEST_TORCH_PYTHON "
              f"(a CMake option, or the environment variable) at a Python with torch to run this check")
        return SKIP
    torch.manual_seed(0)
    py = [sys.executable, CONVERTER]
    mg = [binary, "--threads", "1"]
    with tempfile.TemporaryDirectory() as w:
        # ---- the LRA classifier (ListOps: megagrad's vocabulary of 16 ids, 10 classes)
        sizes = {"layers": 2, "embed_dim": 16, "hidden_dim": 32, "ffn_hidden_dim": 24, "z_dim": 8, "n_dim": 4,
                 "max_positions": 64, "classifier_dim": 12}
        sd = lra_checkpoint(torch, sizes, vocab=16, classes=10)
        extra = dict(sd)
        extra["encoder.encoder.embed_norm.weight"] = torch.ones(16)  # official normalize_embedding: not in megagrad
        save_fairseq(torch, os.path.join(w, "lra.pt"), extra, chunk_size=-1, truncation_length=None,
                     attention_activation_fn="softmax", dropout=0.0, attention_dropout=0.0, act_dropout=0.0)
        p = run(py + ["lra.pt", "lra.safetensors"], w, expect=1)
        if "encoder.encoder.embed_norm.weight" not in p.stderr or "--drop" not in p.stderr:
            fail(f"the refusal of an unknown key does not name it or --drop:\n{p.stderr}")
        if os.path.exists(os.path.join(w, "lra.safetensors")):
            fail("a refused conversion wrote its output")
        p = run(py + ["lra.pt", "lra.safetensors", "--drop", "encoder.encoder.embed_norm.*", "--print-config"], w)
        if "dropped encoder.encoder.embed_norm.weight (--drop encoder.encoder.embed_norm.*)" not in p.stderr:
            fail(f"the dropped key is not reported:\n{p.stderr}")
        got, meta = read_safetensors(os.path.join(w, "lra.safetensors"))
        check_same(torch, got, sd, "F32", "lra.safetensors")
        if "format" in meta or "checksum" in meta or meta.get("converted_from") != "lra.pt":
            fail(f"lra.safetensors's metadata: {meta}")
        model = json.loads(p.stdout)["model"]
        for k, v in sizes.items():
            if model.get(k) != v:
                fail(f"--print-config: {k} is {model.get(k)}, the checkpoint was built with {v}")
        if model.get("prenorm") is not True or model.get("norm_type") != "layernorm" or model.get("rel_pos_bias") != "simple":
            fail(f"--print-config: {model}")
        # megagrad reads it with the run configuration, reports it unverified, and loads every value.
        cfg = {"task": "listops", "model": dict(model), "data": {"num_train": 16, "max_len": 30},
               "train": {"steps": 1, "batch_size": 4, "lr": 0.0, "warmup": 0}}
        json.dump(cfg, open(os.path.join(w, "lra.json"), "w"))
        p = run(mg + ["eval", "--weights", "lra.safetensors", "--config", "lra.json"], w)
        if "lra.safetensors is unverified" not in p.stderr or "val accuracy" not in p.stdout:
            fail(f"eval --weights: no unverified warning or no result:\n{p.stdout}{p.stderr}")
        run(mg + ["train", "--task", "listops", "--config", "lra.json", "--init-from", "lra.safetensors", "--out", "run"], w)
        run(mg + ["export", "run/checkpoint.safetensors", "back.safetensors"], w)
        back, meta = read_safetensors(os.path.join(w, "back.safetensors"))
        check_same(torch, back, sd, "F32", "megagrad's export after --init-from")
        # A configuration that does not fit: the error names the tensors.
        bad = dict(cfg, model=dict(model, layers=3, z_dim=4))
        json.dump(bad, open(os.path.join(w, "bad.json"), "w"))
        p = run(mg + ["eval", "--weights", "lra.safetensors", "--config", "bad.json"], w, expect=1)
        for s in ["[eval] lra.safetensors: the tensors do not match the model", "missing tensors (22): encoder.encoder.layers.2.",
                  "encoder.encoder.layers.0.mega_layer.gamma (2,8) in file, (2,4) in model"]:
            if s not in p.stderr:
                fail(f"eval with a 3-layer configuration: '{s}' not in\n{p.stderr}")

        # ---- F16 weights stay F16 in the file; megagrad widens them (exactly) to float32.
        half = {k: v.half() for k, v in sd.items()}
        save_fairseq(torch, os.path.join(w, "half.pt"), half)
        run(py + ["half.pt", "half.safetensors"], w)
        check_same(torch, read_safetensors(os.path.join(w, "half.safetensors"))[0], half, "F16", "half.safetensors")
        p = run(mg + ["eval", "--weights", "half.safetensors", "--config", "lra.json"], w)
        if "are F16 in the file, read as float32" not in p.stderr:
            fail(f"eval of F16 weights does not say so:\n{p.stderr}")
        run(mg + ["train", "--task", "listops", "--config", "lra.json", "--init-from", "half.safetensors", "--out", "run16"], w)
        run(mg + ["export", "run16/checkpoint.safetensors", "back16.safetensors"], w)
        check_same(torch, read_safetensors(os.path.join(w, "back16.safetensors"))[0],
                   {k: v.float() for k, v in half.items()}, "F32", "F16 weights through megagrad")
        # --dtype bf16 converts.
        run(py + ["lra.pt", "bf16.safetensors", "--drop", "encoder.encoder.embed_norm.*", "--dtype", "bf16"], w)
        check_same(torch, read_safetensors(os.path.join(w, "bf16.safetensors"))[0],
                   {k: v.bfloat16() for k, v in sd.items()}, "BF16", "--dtype bf16")

        # ---- the language model: decoder.version is bookkeeping, dropped.
        text = "the quick brown fox jumps over the lazy dog.\n" * 40
        open(os.path.join(w, "text.txt"), "w").write(text)
        lm_sizes = {"layers": 1, "embed_dim": 16, "hidden_dim": 32, "ffn_hidden_dim": 24, "z_dim": 8, "n_dim": 4,
                    "max_positions": 16}
        lm = lm_checkpoint(torch, lm_sizes, vocab=len(set(text)) + 1)  # megagrad's character ids: 0 is padding
        save_fairseq(torch, os.path.join(w, "lm.pt"), lm, decoder_chunk_size=16)
        p = run(py + ["lm.pt", "lm.safetensors", "--print-config"], w)
        if "dropped decoder.version (fairseq bookkeeping)" not in p.stderr:
            fail(f"decoder.version is not reported as dropped:\n{p.stderr}")
        lm.pop("decoder.version")
        check_same(torch, read_safetensors(os.path.join(w, "lm.safetensors"))[0], lm, "F32", "lm.safetensors")
        lm_model = json.loads(p.stdout)["model"]
        if lm_model.get("chunk_size") != 16 or lm_model.get("layers") != 1:
            fail(f"--print-config of the LM: {lm_model}")
        json.dump({"task": "charlm", "model": lm_model, "data": {"file": "text.txt", "seq_len": 32},
                   "train": {"steps": 1, "batch_size": 2, "lr": 0.0, "warmup": 0}}, open(os.path.join(w, "lm.json"), "w"))
        p = run(mg + ["eval", "--weights", "lm.safetensors", "--config", "lm.json"], w)
        if "val bpc" not in p.stdout:
            fail(f"eval of the LM: {p.stdout}{p.stderr}")
        run(mg + ["train", "--task", "charlm", "--config", "lm.json", "--init-from", "lm.safetensors", "--out", "runlm"], w)
        run(mg + ["export", "runlm/checkpoint.safetensors", "backlm.safetensors"], w)
        check_same(torch, read_safetensors(os.path.join(w, "backlm.safetensors"))[0], lm, "F32", "the LM through megagrad")

        # ---- refusals: a translation-model key, mixed layouts, a raw pickle without --unsafe-load.
        mt = {"encoder.layers.0.mega_layer.move.alpha": torch.zeros(2, 2, 1)}
        save_fairseq(torch, os.path.join(w, "mt.pt"), mt)
        p = run(py + ["mt.pt", "mt.safetensors"], w, expect=1)
        if "encoder.layers.0.mega_layer.move.alpha  (the translation model's encoder" not in p.stderr:
            fail(f"a translation-model key: {p.stderr}")
        mixed = dict(sd)
        mixed["decoder.embed_tokens.weight"] = torch.zeros(3, 16)
        save_fairseq(torch, os.path.join(w, "mixed.pt"), mixed)
        p = run(py + ["mixed.pt", "mixed.safetensors"], w, expect=1)
        if "mix the layouts" not in p.stderr:
            fail(f"mixed layouts: {p.stderr}")

        import fractions  # an object that torch.load(weights_only=True) must not unpickle
        torch.save({"model": sd, "cfg": fractions.Fraction(1, 3)}, os.path.join(w, "custom.pt"))
        p = run(py + ["custom.pt", "custom.safetensors"], w, expect=1)
        if "--unsafe-load" not in p.stderr:
            fail(f"a pickle with a custom object: {p.stderr}")
        p = run(py + ["missing.pt", "x.safetensors"], w, expect=1)
        if "cannot read missing.pt" not in p.stderr:
            fail(f"a missing checkpoint: {p.stderr}")
    print("convert_fairseq_mega: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
