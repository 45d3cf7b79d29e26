#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets, tests/fuzz/corpus/<target>/<name>, and their
dictionaries, tests/fuzz/<target>.dict.

Small valid files of every format, and near-valid ones (one field wrong), so that the fuzzer
starts past the magic numbers and length fields. Deterministic; re-running it rewrites the same
files (and removes none). Uses only the standard library and the repository's test data.

    python3 tests/fuzz/make_corpus.py
"""
import gzip
import json
import os
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
DATA = os.path.join(ROOT, "tests", "data")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(*parts):
    with open(os.path.join(DATA, *parts), "rb") as f:
        return f.read()


# ---------------------------------------------------------------- safetensors

DTYPES = {"F32": ("<f", 4, "float32"), "F64": ("<d", 8, "float64"), "I64": ("<q", 8, "int64"),
          "BOOL": ("<?", 1, "bool"),
          # Read and widened to float32; BF16 values are given as their 16 bits.
          "F16": ("<e", 2, "float16"), "BF16": ("<H", 2, "bfloat16")}


def tensor_bytes(dtype, values):
    fmt, _, _ = DTYPES[dtype]
    return b"".join(struct.pack(fmt, v) for v in values)


def safetensors_parts(tensors, metadata=None):
    """(header text, data bytes) for tensors [(name, dtype, shape, values)], as the writer does."""
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, values in tensors:
        b = tensor_bytes(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    return text.encode(), data


def safetensors_file(header, data):
    return struct.pack("<Q", len(header)) + header + data


def fnv_checksum(tensors):
    """mega/train/checkpoint.cpp tensors_checksum: FNV-1a 64 over names, dtypes, shapes, bytes."""
    h = 1469598103934665603

    def add(b):
        nonlocal h
        for c in b:
            h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF

    for name, dtype, shape, values in tensors:
        add(name.encode() + b"\0")
        add(DTYPES[dtype][2].encode() + b"\0")
        for d in shape:
            add(struct.pack("<q", d))
        add(tensor_bytes(dtype, values))
    return "%016x" % h


def safetensors_seeds():
    t = "fuzz_safetensors"
    # Mode byte: even = the payload is the file; odd = "<header> NUL <data>" (the target adds the
    # length field).
    mixed = [("w", "F32", [2, 3], [0.5, -1.0, 2.0, 3.25, 0.0, -0.0]),
             ("x", "F64", [], [1.5]),
             ("idx", "I64", [4], [0, -1, 2 ** 40, 7]),
             ("mask", "BOOL", [3], [True, False, True]),
             ("empty", "F32", [0, 5], [])]
    seeds = {
        "mixed": safetensors_parts(mixed, {"note": "seed", "k": "v"}),
        "no_tensors": safetensors_parts([]),
        "metadata_only": safetensors_parts([], {"format": "pt"}),
        "scalar_f64": safetensors_parts([("s", "F64", [], [3.0])]),
        # 16-bit floats: 1, -2, the smallest F16 subnormal, Inf; BF16 1.0 and a quiet NaN.
        "halves": safetensors_parts([("h", "F16", [4], [1.0, -2.0, 2.0 ** -24, float("inf")]),
                                     ("b", "BF16", [2], [0x3F80, 0x7FC0])]),
    }
    ck = [("model.layer.weight", "F32", [2, 2], [1.0, 2.0, 3.0, 4.0]),
          ("model.layer.bias", "F32", [2], [0.0, 1.0]),
          ("optim.step", "I64", [1], [3]),
          ("optim.layer.weight.m", "F64", [2, 2], [0.1, 0.2, 0.3, 0.4])]
    seeds["checkpoint"] = safetensors_parts(
        ck, {"format": "megagrad-checkpoint-1", "checksum": fnv_checksum(ck), "step": "3",
             "rng": "1 24", "data": '{"epoch":0,"position":6}', "config": '{"task":"listops"}'})
    for name, (header, data) in seeds.items():
        write(t, name + ".st", b"\0" + safetensors_file(header, data))
        write(t, name + ".split", b"\1" + header.rstrip(b" ") + b"\0" + data)
    # Near-valid: one thing wrong each (the reader must reject them cleanly).
    header, data = seeds["mixed"]
    write(t, "truncated_data.st", b"\0" + safetensors_file(header, data[:-3]))
    write(t, "length_too_big.st", b"\0" + struct.pack("<Q", 1 << 40) + header + data)
    bad = [
        ('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
         '"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8),  # overlap
        ('{"a":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}', 8),  # unsupported dtype
        ('{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]}}', 16),  # overflow
        ('{"a":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}', 2),  # BOOL byte 0xff below
        ('{"a":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}}', 16),  # a hole
        ('{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}}', 8),  # F16 with F32's byte count
    ]
    for i, (h, n) in enumerate(bad):
        write(t, "bad%d.split" % i, b"\1" + h.encode() + b"\0" + b"\xff" * n)


# ---------------------------------------------------------------- JSON configs

def json_seeds():
    t = "fuzz_json_config"
    # Reference-case configs (tests/data/ref), without the long provenance lists.
    for case in ["ii_tiny_chunk4_padding", "iii_tiny_laplace_rotary_scalenorm", "iv_tiny_relu2_rmsnorm_postnorm",
                 "viii_tiny_causal_relu2_padding_trunc6"]:
        cfg = json.loads(read("ref", case, "config.json"))
        for k in ["_files", "_f64_patches", "_official_source", "_official_commit"]:
            cfg.pop(k, None)
        write(t, "layer_" + case + ".json", json.dumps(cfg, indent=1))
    # Run configurations (megagrad train --config).
    write(t, "run_listops.json", json.dumps({
        "model": {"type": "transformer", "layers": 1, "embed_dim": 32, "hidden_dim": 64, "truncation": 8,
                  "rel_pos_bias": "rotary", "norm_type": "rmsnorm", "dropout": 0.1},
        "data": {"preset": "short", "seed": 3, "min_len": 20, "max_len": 40, "num_train": 100},
        "train": {"steps": 10, "batch_size": 8, "lr": 1e-3, "warmup": 2, "eps": 1e-8, "clip": 0.5},
        "_comment": "a tiny run"}))
    write(t, "run_charlm.json", json.dumps({
        "model": {"chunk_size": 32, "max_positions": 32, "attention_activation": "laplace"},
        "data": {"file": "/tmp/x.txt", "seq_len": 64, "val_fraction": 0.1}, "train": {"seed": 7}}))
    write(t, "run_fmnist.json", '{"data": {"val_size": 100, "dir": "/tmp"}, "train": {"accum": 2}}')
    # Checkpoint data states.
    write(t, "state_iterator.json", json.dumps({"size": 10, "batch_size": 3, "seed": "7", "shuffle": True,
                                                "drop_last": False, "epoch": 2, "position": 3}))
    # The largest epoch: its last batch would overflow the epoch counter (tests/test_fuzz_regressions.cpp).
    write(t, "state_iterator_last_epoch.json", json.dumps({"size": 10, "batch_size": 3, "seed": "7", "shuffle": True,
                                                           "drop_last": False, "epoch": 2 ** 63 - 1, "position": 9}))
    write(t, "state_charlm.json", json.dumps({"vocab": {"chars": [10, 32, 46, 65, 97, 98]},
                                              "sampler_seed": "1", "sampler_offset": "96"}))
    # JSON corner cases: escapes, surrogates, UTF-8, numbers at the edges of double and int64.
    write(t, "strings.json", r'["a\"b\\c\/\b\f\n\r\t", "\u00e9\u4e2d\ud83d\ude00", "' + "\u00e9\u4e2d" + '", ""]')
    write(t, "numbers.json", "[0, -0, 1.5e308, -2.5e-308, 4.9e-324, 1e-400, 9223372036854775807, "
                             "-9223372036854775808, 9223372036854775808, 123.456e-7, 1E+2]")
    write(t, "nested.json", "[" * 100 + "{}" + "]" * 100)
    write(t, "literals.json", ' {"t": true, "f": false, "n": null, "o": {"a": [1, {"b": []}]}} ')
    write(t, "bad_trailing_comma.json", '{"embed_dim": 8,}')
    write(t, "bad_duplicate.json", '{"embed_dim": 8, "embed_dim": 9}')


# ---------------------------------------------------------------- data readers

def gzip_member(data, level=6, flags=0, name=b"", comment=b"", extra=b""):
    """A gzip member written by hand, so that the optional header fields appear."""
    header = b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0" + b"\x02\xff"
    if flags & 4:
        header += struct.pack("<H", len(extra)) + extra
    if flags & 8:
        header += name + b"\0"
    if flags & 16:
        header += comment + b"\0"
    if flags & 2:
        header += struct.pack("<H", zlib.crc32(header) & 0xFFFF)
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = c.compress(data) + c.flush()
    return header + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def idx_file(dims, data):
    return b"\0\0\x08" + bytes([len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


def data_seeds():
    t = "fuzz_data_readers"
    # Selector byte % 6: 0 ListOps TSV, 1 IDX, 2 gzip, 3 IDX file (plain or gzip; with bit 3 set the
    # target compresses it), 4 text, 5 images.
    tsv = read("listops", "sample.tsv")
    write(t, "listops_sample.tsv", b"\0" + tsv)
    write(t, "listops_crlf.tsv", b"\0" + b"Source\tTarget\r\n( ( ( [SM 2 ) 9 ) ] )\t1\r\n[MED 1 2 3 ]\t2\r\n")
    write(t, "listops_wrong_label.tsv", b"\6" + b"Source\tTarget\n[MAX 2 9 ]\t3\n")  # 6 % 6 == 0
    write(t, "listops_header_only.tsv", b"\0" + b"Source\tTarget\n")

    images = idx_file([3, 2, 4], [(8 * n + 4 * r + c) * 7 % 256 for n in range(3) for r in range(2) for c in range(4)])
    labels = idx_file([3], [3, 1, 4])
    write(t, "idx_images", b"\1" + images)
    write(t, "idx_labels", b"\1" + labels)
    write(t, "idx_empty_dim", b"\1" + idx_file([0, 5], []))
    write(t, "idx_trailing_byte", b"\1" + labels + b"\0")

    for f in ["hello.txt.gz", "two_members.txt.gz"]:
        write(t, "gzip_" + f, b"\2" + read("gzip", f))
    text = b"".join(b"line %d: %d\n" % (i, i * i % 9973) for i in range(40))
    write(t, "gzip_stored.gz", b"\2" + gzip_member(text, level=0))
    write(t, "gzip_dynamic.gz", b"\2" + gzip_member(text, level=9))
    write(t, "gzip_all_fields.gz", b"\2" + gzip_member(b"abcabcabcabc", flags=2 | 4 | 8 | 16, name=b"n.txt",
                                                       comment=b"c", extra=b"XY\x02\x00hi"))
    write(t, "gzip_bad_crc.gz", b"\2" + read("gzip", "hello.txt.gz")[:-8] + b"\0\0\0\0\x0f\0\0\0")

    write(t, "idxfile_images.gz", b"\3" + read("idx", "tiny-images-idx3-ubyte.gz"))
    write(t, "idxfile_labels", b"\3" + read("idx", "tiny-labels-idx1-ubyte"))
    write(t, "idxfile_labels.gz", b"\3" + gzip.compress(labels, mtime=0))
    # Selector 9 (9 % 6 == 3, bit 3 set): the target gzip-compresses the payload, a plain IDX file.
    write(t, "idxfile_images_zlib", b"\x09" + images)
    # Selector 74 (74 % 6 == 2): the gzip reader; the target also compresses the payload at level 9.
    write(t, "gzip_plain_text_level9", b"\x4a" + text)

    corpus = b"In the beginning God created the heaven and the earth.\nAnd the earth was without form.\n"
    for sel in [4, 10, 16, 28, 40, 58, 70, 100, 196]:  # each % 6 == 4; bits 3-7: split, vocabulary, window
        write(t, "text_%d.txt" % sel, bytes([sel]) + corpus)
    write(t, "text_bytes.bin", b"\x28" + bytes(range(256)))

    pair = images + labels
    write(t, "images_pair", b"\5" + struct.pack("<H", len(images)) + pair)
    write(t, "images_pair_gz", b"\5" + struct.pack("<H", 56) + read("idx", "tiny-images-idx3-ubyte.gz") + labels)
    write(t, "images_bad_label", b"\5" + struct.pack("<H", len(images)) + images + idx_file([3], [3, 1, 12]))


# ---------------------------------------------------------------- dictionaries

JSON_TOKENS = ['{', '}', '[', ']', ':', ',', '"', '\\"', '\\\\', '\\u', '\\ud83d\\ude00', 'true', 'false', 'null',
               '-0', '1e308', '1e-400', '9223372036854775808', '-9223372036854775809', '0.5', '1E+2']
CONFIG_KEYS = [
    # mega/config.h (layer) keys and values
    "embed_dim", "hidden_dim", "ffn_hidden_dim", "z_dim", "n_dim", "chunk_size", "truncation", "rel_pos_bias",
    "max_positions", "attention_activation", "norm_type", "norm_affine", "prenorm", "bidirectional", "causal",
    "dropout", "attention_dropout", "hidden_dropout", "activation", "seq_len", "batch", "with_padding",
    "pad_lengths", "param_noise", "simple", "rotary", "softmax", "laplace", "relu2", "layernorm", "scalenorm",
    "rmsnorm", "batchnorm", "silu",
    # run configuration (mega/train/tasks.cpp)
    "task", "model", "data", "train", "type", "layers", "classifier_dim", "heads", "mega", "transformer",
    "preset", "seed", "dir", "file", "eval_file", "min_len", "max_len", "num_train", "val_size", "val_fraction",
    "short", "lra", "medium", "steps", "batch_size", "accum", "lr", "end_lr", "warmup", "beta1", "beta2", "eps",
    "weight_decay", "clip", "log_every", "eval_every", "eval_batches", "checkpoint_every", "_comment",
    # checkpoint data states
    "chars", "vocab", "size", "shuffle", "drop_last", "epoch", "position", "sampler_seed", "sampler_offset"]
SAFETENSORS_KEYS = ["dtype", "shape", "data_offsets", "__metadata__", "F32", "F64", "I64", "BOOL", "F16", "BF16",
                    "format", "megagrad-checkpoint-1", "megagrad-weights-1", "checksum", "model.", "optim.", "step", "rng", "config"]
DATA_TOKENS = ['[MIN', '[MAX', '[MED', '[SM', ']', '(', ')', ' ', '\t', '\r\n', 'Source\tTarget\n',
               'Source\tTarget\r\n',
               # gzip: magic + deflate with no flags / all flags, a stored block's length pair, empty stored block
               '\x1f\x8b\x08\x00', '\x1f\x8b\x08\x1e', '\x00\x00\xff\xff', '\x03\x00',
               # IDX: unsigned-byte magic with 1 and 3 dimensions, sizes 3, 28 and 60000
               '\x00\x00\x08\x01', '\x00\x00\x08\x03', '\x00\x00\x00\x03', '\x00\x00\x00\x1c', '\x00\x00\xea\x60']


def write_dict(target, tokens, what):
    def esc(token):  # a byte string in the dictionary's quoting: \\xNN for anything unusual
        return "".join(chr(c) if 0x20 <= c < 0x7f and c not in (0x22, 0x5c) else "\\x%02x" % c
                       for c in token.encode("latin-1"))
    path = os.path.join(ROOT, "tests", "fuzz", target + ".dict")
    with open(path, "w") as f:
        f.write("# libFuzzer dictionary of %s (written by make_corpus.py): %s.\n" % (target, what))
        for t in dict.fromkeys(tokens):
            f.write('"%s"\n' % esc(t))


def dictionaries():
    write_dict("fuzz_json_config", JSON_TOKENS + ['"%s"' % k for k in CONFIG_KEYS], "JSON syntax and config keys")
    write_dict("fuzz_safetensors", JSON_TOKENS + ['"%s"' % k for k in SAFETENSORS_KEYS] +
               ['\x08\x00\x00\x00\x00\x00\x00\x00', '\x00\x00\x80\x3f'],
               "JSON syntax, header keys, a length field, float 1.0")
    write_dict("fuzz_data_readers", DATA_TOKENS, "ListOps tokens, gzip and IDX header bytes")


if __name__ == "__main__":
    safetensors_seeds()
    json_seeds()
    data_seeds()
    dictionaries()
