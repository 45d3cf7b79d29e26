#!/usr/bin/env python3
"""`megagrad train --tensorboard` against TensorBoard's own reader (run by ctest:
tests/tensorboard/check_events.py path/to/megagrad).

Trains a tiny ListOps run with --tensorboard, then resumes it from an earlier checkpoint (so the
folder holds two event files, and the first one has steps the resumed run logged again), loads
the folder with tensorboard's EventAccumulator and checks every scalar against metrics.jsonl,
both ways. Without the `tensorboard` package it exits 77, which ctest shows as skipped.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

SKIP = 77


def fail(msg):
    print(f"FAILED: {msg}")
    sys.exit(1)


def run(binary, *args, cwd):
    p = subprocess.run([binary, "--threads", "1", *args], cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"megagrad {' '.join(args)}: exit {p.returncode}\n{p.stdout}{p.stderr}")
    return p


def main():
    if len(sys.argv) != 2:
        print("usage: check_events.py path/to/megagrad")
        return 2
    binary = os.path.realpath(sys.argv[1])
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError as e:
        print(f"SKIPPED: Python has no tensorboard package ({e}); `pip install tensorboard` to run this check")
        return SKIP

    with tempfile.TemporaryDirectory() as w:
        with open(os.path.join(w, "tiny.json"), "w") as f:
            json.dump({"model": {"layers": 1, "embed_dim": 16, "hidden_dim": 32, "ffn_hidden_dim": 32, "z_dim": 8,
                                 "n_dim": 4, "classifier_dim": 16},
                       "data": {"num_train": 64, "max_len": 40},
                       "train": {"steps": 3, "batch_size": 8, "warmup": 1, "log_every": 1, "eval_every": 2,
                                 "eval_batches": 2, "checkpoint_every": 3}}, f)
        # A 3-step run's checkpoint stands in for the step-3 checkpoint of a 6-step run that was
        # interrupted after logging steps 4-6: the resumed run logs 4-6 again, with other values
        # (the learning-rate schedule differs), and TensorBoard must show the new ones.
        run(binary, "train", "--task", "listops", "--config", "tiny.json", "--out", "short", cwd=w)
        run(binary, "train", "--task", "listops", "--config", "tiny.json", "--steps", "6", "--out", "runs/a",
            "--tensorboard", cwd=w)
        shutil.copy(os.path.join(w, "short", "checkpoint.safetensors"), os.path.join(w, "runs/a/checkpoint.safetensors"))
        # Not in the same second as the first run's file, so that the two files sort in order of time.
        import time
        time.sleep(1.1)
        run(binary, "train", "--task", "listops", "--config", "tiny.json", "--steps", "6", "--tensorboard",
            "--resume", "runs/a/checkpoint.safetensors", cwd=w)

        tb_dir = os.path.join(w, "runs/a/tensorboard")
        files = sorted(f for f in os.listdir(tb_dir) if f.startswith("events.out.tfevents."))
        if len(files) != 2:
            fail(f"expected 2 event files (start and resume), found {files}")

        expected = {}  # (tag, step) -> value, from metrics.jsonl
        with open(os.path.join(w, "runs/a/metrics.jsonl")) as f:
            for line in f:
                rec = json.loads(line)
                if "header" in rec:
                    continue
                for key, v in rec.items():
                    if key in ("step", "split", "elapsed_s") or not isinstance(v, (int, float)):
                        continue
                    expected[(f"{rec['split']}/{key}", rec["step"])] = float(v)

        acc = event_accumulator.EventAccumulator(tb_dir, size_guidance={event_accumulator.SCALARS: 0})
        acc.Reload()
        got = {}
        for tag in acc.Tags()["scalars"]:
            for e in acc.Scalars(tag):
                if (tag, e.step) in got:
                    fail(f"{tag} at step {e.step} twice")
                got[(tag, e.step)] = e.value

        checked = 0
        for (tag, step), v in expected.items():
            if (tag, step) not in got:
                fail(f"metrics.jsonl has {tag} at step {step}, TensorBoard does not")
            g = got[(tag, step)]
            if not math.isclose(g, v, rel_tol=1e-6, abs_tol=1e-30 if v == 0 else 0) and not (math.isnan(g) and math.isnan(v)):
                fail(f"{tag} at step {step}: TensorBoard {g!r}, metrics.jsonl {v!r}")
            checked += 1
        extra = sorted(k for k in got if k not in expected and k[0] != "train/tokens_per_s")
        if extra:
            fail(f"TensorBoard has scalars that metrics.jsonl does not: {extra[:5]}")
        tps = sorted(s for (t, s) in got if t == "train/tokens_per_s")
        if tps != list(range(1, 7)) or any(not got[("train/tokens_per_s", s)] > 0 for s in tps):
            fail(f"train/tokens_per_s: steps {tps}, expected 1-6 with positive values")
        for tag in ("train/loss", "train/lr", "train/grad_norm", "train/accuracy", "val/loss", "val/accuracy"):
            if tag not in acc.Tags()["scalars"]:
                fail(f"no {tag}")
        print(f"tensorboard events: all checks passed ({checked} scalars equal metrics.jsonl, 2 files, resume purged)")
        return 0


if __name__ == "__main__":
    sys.exit(main())
