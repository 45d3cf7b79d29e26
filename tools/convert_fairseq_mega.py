#!/usr/bin/env python3
"""Convert an official fairseq Mega checkpoint (facebookresearch/mega) to a safetensors file that
`megagrad eval --weights` and `megagrad train --init-from` read.

    python3 tools/convert_fairseq_mega.py checkpoint_best.pt mega.safetensors [--drop PATTERN]...
    megagrad eval --weights mega.safetensors --config model.json

Needs PyTorch (nothing else; the megagrad build never needs this script). The checkpoint is what
fairseq's torch.save writes: a dict whose "model" entry is the state_dict (a bare state_dict is
accepted too). Two official layouts have a megagrad model:

  LRA classifier (fairseq/models/lra: LRAModel + MegaLRAEncoder) -> MegaClassifier:
    encoder.encoder.embed_tokens.embed.weight (tokens) or encoder.encoder.embed_tokens.{weight,bias}
    (real-valued input), encoder.encoder.layers.<i>.{mega_layer,nffn}.*, encoder.encoder.final_norm.*,
    classifier.<j>.0.{weight,bias}, sentence_projection_layer.{weight,bias}
  language model (fairseq/models/mega_lm.py: MegaDecoderNoCrossAttn) -> MegaLM:
    decoder.embed_tokens.weight, decoder.layers.<i>.{mega_layer,nffn}.*, decoder.final_norm.*,
    decoder.output_projection.weight

megagrad's parameter names are the official ones, so the names are kept; the script checks every
key against these layouts and refuses a key it does not know (listing all of them) unless a
--drop PATTERN (fnmatch, e.g. 'encoder.encoder.embed_norm.*') says to leave it out. Dropping a
real weight changes the model: megagrad's own model must then not have it either. fairseq's
bookkeeping buffers (`*.version`, BatchNorm's `*.num_batches_tracked`) are dropped and listed.
The translation model (fairseq/models/mega.py: encoder.layers.*, decoder cross_attn.*) has no
megagrad counterpart and is refused.

The output holds the tensors in the checkpoint's dtype (F32, F16 or BF16; megagrad reads F16/BF16
as float32), or the one --dtype asks for, and metadata naming the source. It carries no megagrad
"format", configuration or checksum: megagrad reports it as unverified and needs the run
configuration (--config MODEL.json, with "task"). --print-config prints the "model" section
that the tensor shapes (and the checkpoint's fairseq args, where present) determine.

Loading a pickle runs code: by default the file is read with torch.load(weights_only=True)
(argparse.Namespace, which fairseq stores as "args", allowed). --unsafe-load reads any pickle;
use it only on files you trust.

Exit codes: 0 written, 1 refused (unknown keys, another layout, a non-float tensor, ...), 2 usage.
"""
import argparse
import fnmatch
import json
import os
import re
import struct
import sys
import tempfile

_LAYER = (r"(mega_layer\.(move\.(delta|alpha|beta|gamma|omega)|(v_proj|mx_proj|h_proj)\.(weight|bias)|gamma|beta"
          r"|rel_pos_bias\.(rel_pos_bias|alpha|beta)|norm\.norm\.(weight|bias|scalar|running_mean|running_var))"
          r"|nffn\.(norm\.norm\.(weight|bias|scalar|running_mean|running_var)|fc1\.(weight|bias)|fc2\.(weight|bias)))")
_NORM = r"norm\.(weight|bias|scalar|running_mean|running_var)"

# (layout, regex) of every official key with a megagrad counterpart; the name stays the same.
LAYOUTS = {
    "lra": [r"encoder\.encoder\.embed_tokens\.embed\.weight",
            r"encoder\.encoder\.embed_tokens\.(weight|bias)",
            r"encoder\.encoder\.layers\.\d+\." + _LAYER,
            r"encoder\.encoder\.final_norm\." + _NORM,
            r"classifier\.\d+\.0\.(weight|bias)",
            r"sentence_projection_layer\.(weight|bias)"],
    "lm": [r"decoder\.embed_tokens\.weight",
           r"decoder\.layers\.\d+\." + _LAYER,
           r"decoder\.final_norm\." + _NORM,
           r"decoder\.output_projection\.weight"],
}
LAYOUT_NAMES = {"lra": "LRA classifier (MegaClassifier)", "lm": "language model (MegaLM)"}
# fairseq's bookkeeping, not weights: dropped, and said so.
BOOKKEEPING = [r"(.+\.)?version", r".+\.num_batches_tracked"]
# Official keys of models megagrad does not have, for a clearer refusal.
KNOWN_ELSEWHERE = [
    (r"encoder\.(layers|embed_tokens|final_norm)\..*", "the translation model's encoder (fairseq/models/mega.py)"),
    (r"decoder\.layers\.\d+\.cross_attn\..*", "the translation model's cross-attention"),
    (r".*embed_norm\..*", "normalize_embedding (an embedding norm megagrad's models do not have)"),
    (r"decoder\.(project_in_dim|adaptive_softmax)\..*", "a decoder option megagrad's MegaLM does not have"),
]
DTYPE_CODES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}


class Refused(Exception):
    pass


def fullmatch_any(patterns, key):
    return any(re.fullmatch(p, key) for p in patterns)


def load_state_dict(path, unsafe):
    import torch
    try:
        if unsafe:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        else:
            try:
                torch.serialization.add_safe_globals([argparse.Namespace])
            except AttributeError:  # an old torch: weights_only has no allow-list
                pass
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise Refused(f"cannot read {path}: {e.strerror}")
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... for a file it will not read
        hint = "" if unsafe else " (a pickle with other objects than tensors and argparse.Namespace: if you trust the file, add --unsafe-load)"
        raise Refused(f"cannot load {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}{hint}")
    if isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt["model"], dict):
        state, args = ckpt["model"], ckpt.get("args")
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state, args = ckpt, None
    else:
        raise Refused(f"{path}: neither a fairseq checkpoint (a dict with a \"model\" state_dict) nor a state_dict")
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise Refused(f"{path}: state_dict entry {k!r} is a {type(v).__name__}, not a tensor")
    return state, args


def classify(state, drop_patterns):
    """(layout, kept [(name, tensor)], dropped [(key, why)]) or Refused naming every unknown key."""
    kept, dropped, unknown, layouts = [], [], [], set()
    used_patterns = set()
    for key, t in state.items():
        hits = [p for p in drop_patterns if fnmatch.fnmatchcase(key, p)]
        if hits:
            used_patterns.update(hits)
            dropped.append((key, f"--drop {hits[0]}"))
            continue
        layout = next((name for name, pats in LAYOUTS.items() if fullmatch_any(pats, key)), None)
        if layout:
            layouts.add(layout)
            kept.append((key, t))
        elif fullmatch_any(BOOKKEEPING, key):
            dropped.append((key, "fairseq bookkeeping"))
        else:
            unknown.append(key)
    if unknown:
        lines = []
        for key in unknown:
            why = next((w for p, w in KNOWN_ELSEWHERE if re.fullmatch(p, key)), None)
            lines.append(f"  {key}" + (f"  ({why})" if why else ""))
        raise Refused(f"{len(unknown)} key(s) with no megagrad counterpart:\n" + "\n".join(lines) +
                      "\nleave them out with --drop PATTERN (fnmatch, e.g. --drop '" + unknown[0] + "'), "
                      "if megagrad's model is meant to lack them")
    for p in drop_patterns:
        if p not in used_patterns:
            print(f"convert_fairseq_mega: warning: --drop {p} matched no key", file=sys.stderr)
    if len(layouts) > 1:
        raise Refused("the keys mix the layouts of " + " and ".join(LAYOUT_NAMES[x] for x in sorted(layouts)))
    if not layouts:
        raise Refused("no weights left to write")
    for key, t in kept:
        if not t.is_floating_point() or str(t.dtype).replace("torch.", "") not in DTYPE_CODES:
            raise Refused(f"{key} is {t.dtype}: megagrad's weights are floating point (F32, F64, F16, BF16)")
    return layouts.pop(), kept, dropped


def tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    u8 = t.view(-1).view(__import__("torch").uint8) if t.numel() else t.new_empty(0, dtype=__import__("torch").uint8)
    try:
        return u8.numpy().tobytes()
    except Exception:  # torch without numpy
        return bytes(u8.tolist())


def write_safetensors(path, tensors, metadata):
    """tensors [(name, tensor)] in order, little-endian row-major; written to a temp file, then renamed."""
    header, offset, chunks = {"__metadata__": metadata}, 0, []
    for name, t in tensors:
        b = tensor_bytes(t)
        header[name] = {"dtype": DTYPE_CODES[str(t.dtype).replace("torch.", "")], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        chunks.append(b)
        offset += len(b)
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text.encode())
            for b in chunks:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def model_config(layout, kept, args):
    """The megagrad "model" section that the shapes (and fairseq's args) determine."""
    w = dict(kept)
    prefix = "encoder.encoder." if layout == "lra" else "decoder."
    layers = sorted({int(m.group(1)) for k in w for m in [re.match(re.escape(prefix) + r"layers\.(\d+)\.", k)] if m})
    if layers != list(range(len(layers))):
        raise Refused(f"the layers are numbered {layers}, not 0..{len(layers) - 1}")
    L0 = prefix + "layers.0."
    if L0 + "mega_layer.move.omega" not in w:
        raise Refused(f"no {L0}mega_layer.move.omega: cannot tell the model's sizes")
    m = {"type": "mega", "layers": len(layers),
         "embed_dim": w[L0 + "mega_layer.move.omega"].shape[0],
         "hidden_dim": w[L0 + "mega_layer.v_proj.weight"].shape[0],
         "z_dim": w[L0 + "mega_layer.gamma"].shape[1],
         "n_dim": w[L0 + "mega_layer.move.delta"].shape[1],
         "ffn_hidden_dim": w[L0 + "nffn.fc1.weight"].shape[0] if L0 + "nffn.fc1.weight" in w else 0}
    if L0 + "mega_layer.rel_pos_bias.rel_pos_bias" in w:
        m["rel_pos_bias"] = "simple"
        m["max_positions"] = (w[L0 + "mega_layer.rel_pos_bias.rel_pos_bias"].shape[0] + 1) // 2
    else:
        m["rel_pos_bias"] = "rotary"
    norm = L0 + "mega_layer.norm.norm."
    m["norm_type"] = ("scalenorm" if norm + "scalar" in w else "batchnorm" if norm + "running_mean" in w
                      else "layernorm" if norm + "bias" in w else "rmsnorm" if norm + "weight" in w else None)
    if m["norm_type"] is None:  # no parameters at all: an affine-free layernorm or rmsnorm
        del m["norm_type"]
        m["norm_affine"] = False
    m["prenorm"] = any(k.startswith(prefix + "final_norm.") for k in w)
    if layout == "lra":
        heads = sorted({int(x.group(1)) for k in w for x in [re.match(r"classifier\.(\d+)\.0\.weight", k)] if x})
        if heads:
            m["classifier_dim"] = w["classifier.0.0.weight"].shape[0]
            m["classifier_layers"] = len(heads)
        m["projection_bias"] = "sentence_projection_layer.bias" in w
    a = vars(args) if isinstance(args, argparse.Namespace) else (args if isinstance(args, dict) else {})
    for ours, theirs in [("chunk_size", "chunk_size"), ("truncation", "truncation_length"),
                         ("attention_activation", "attention_activation_fn"), ("dropout", "dropout"),
                         ("attention_dropout", "attention_dropout"), ("hidden_dropout", "act_dropout")]:
        if theirs in a and a[theirs] is not None:
            m[ours] = a[theirs]
    if layout == "lm" and "decoder_chunk_size" in a:
        m["chunk_size"] = a["decoder_chunk_size"]
    return m


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="convert_fairseq_mega.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Layouts, names and the rules: see the top of tools/convert_fairseq_mega.py and megagrad's README, "
               "\"Weights in and out\".")
    p.add_argument("checkpoint", help="the fairseq checkpoint (.pt)")
    p.add_argument("out", nargs="?", help="the safetensors file to write")
    p.add_argument("--drop", action="append", default=[], metavar="PATTERN",
                   help="leave out the keys that match this fnmatch pattern (repeatable)")
    p.add_argument("--dtype", choices=["keep", "f32", "f16", "bf16"], default="keep",
                   help="the tensors' dtype in the output (default: the checkpoint's)")
    p.add_argument("--print-config", action="store_true",
                   help="print the megagrad \"model\" section the checkpoint determines (JSON) on stdout")
    p.add_argument("--unsafe-load", action="store_true",
                   help="read any pickle (runs its code): only for checkpoints you trust")
    a = p.parse_args(argv)
    if not a.out and not a.print_config:
        p.error("give OUT.safetensors, or --print-config")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("convert_fairseq_mega: error: this script needs PyTorch (pip install torch)", file=sys.stderr)
        return 1
    try:
        state, args = load_state_dict(a.checkpoint, a.unsafe_load)
        layout, kept, dropped = classify(state, a.drop)
        if a.dtype != "keep":
            import torch
            want = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
            kept = [(k, t.to(want)) for k, t in kept]
        config = model_config(layout, kept, args)
        if a.out:
            write_safetensors(a.out, kept, {
                "converted_from": os.path.basename(a.checkpoint),
                "converter": "megagrad tools/convert_fairseq_mega.py",
                "layout": LAYOUT_NAMES[layout]})
    except Refused as e:
        print(f"convert_fairseq_mega: error: {a.checkpoint}: {e}", file=sys.stderr)
        return 1
    for key, why in dropped:
        print(f"convert_fairseq_mega: dropped {key} ({why})", file=sys.stderr)
    if a.out:
        dtypes = sorted({DTYPE_CODES[str(t.dtype).replace('torch.', '')] for _, t in kept})
        print(f"convert_fairseq_mega: {LAYOUT_NAMES[layout]}: {len(kept)} tensors ({', '.join(dtypes)}), "
              f"{len(dropped)} dropped -> {a.out}", file=sys.stderr)
    if a.print_config:
        print(json.dumps({"model": config}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
