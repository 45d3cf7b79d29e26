#!/usr/bin/env python3
"""Turns the charlm experiment's two runs into results.json, a bits-per-character plot and a table.

    python3 experiments/charlm/summarize_charlm.py --out OUT/results.json --plot OUT/val_bpc.svg \\
        --table OUT/table.md RUN_DIR...

Each RUN_DIR is what run.sh leaves (experiments/summarize.py reads the common files); besides:
  val.txt      megagrad eval CKPT --split val: the final checkpoint on the whole validation split
  sample*.txt  megagrad generate CKPT --prompt ... : the prompt and its continuation
The compressors' anchors (xz -9, bzip2 -9: 8 * compressed bytes / characters) are computed here on
the exact validation text the runs used (the corpus and split named in train.log and config.json),
alone and given the training text (compressed(train + val) - compressed(train): what the
compressor adds for the validation text after reading the training text, as the model did).
Standard library only.
"""
import argparse
import glob
import json
import math
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import summarize  # noqa: E402

GOAL = 1.6
COLORS = {"mega": "#1f77b4", "transformer": "#ff7f0e"}


def corpus_of(run):
    """The corpus path, its validation split (bytes) and training split of a run."""
    log = summarize.read(os.path.join(run["path"], "train.log"), "") or ""
    m = re.search(r"character LM on (.+?): (\d+) train / (\d+) val characters", log)
    if not m:
        return None
    path, n_train, n_val = m.group(1), int(m.group(2)), int(m.group(3))
    with open(path, "rb") as f:
        text = f.read()
    frac = run["config"].get("data", {}).get("val_fraction", 0.05)
    k = math.floor(len(text) * frac)  # mega/data/text.cpp make_text_data: the last floor(n * f) bytes
    assert k == n_val and len(text) - k == n_train, f"{path}: the split differs from the run's ({n_train}/{n_val})"
    return path, text[:len(text) - k], text[len(text) - k:]


def compressed_size(tool, data):
    return len(subprocess.run([tool, "-9", "-c"], input=data, capture_output=True, check=True).stdout)


def compressors(train, val):
    out = {}
    for tool in ("xz", "bzip2"):
        if not shutil.which(tool):
            out[tool] = {"available": False}
            continue
        alone = compressed_size(tool, val)
        given = compressed_size(tool, train + val) - compressed_size(tool, train)
        out[tool] = {"available": True, "command": f"{tool} -9 -c", "val_bytes": alone,
                     "val_bpc": 8 * alone / len(val), "val_given_train_bytes": given,
                     "val_given_train_bpc": 8 * given / len(val)}
    return out


def final_eval(d):
    t = summarize.read(os.path.join(d, "val.txt"))
    m = t and re.search(r"val bpc ([0-9.eE+-]+) \(loss ([0-9.eE+-]+), (\d+) predictions\)", t)
    return (float(m.group(1)), float(m.group(2)), int(m.group(3))) if m else (None, None, None)


def samples(d):
    out = []
    for p in sorted(glob.glob(os.path.join(d, "sample*.txt"))):
        out.append(summarize.read(p, ""))
    return out


def plot(runs, anchors, path, title):
    W, H, L, R, T, B = 760, 440, 60, 230, 40, 50
    pw, ph = W - L - R, H - T - B
    pts = [p for r in runs for p in summarize.series(r, "val")]
    xmax = max([p[0] for p in pts] + [1])
    lines = [(GOAL, "goal 1.6 bpc", "#2ca02c")] + [(v, k, "#777") for k, v in anchors.items()]
    ys = [p[1] for p in pts] + [v for v, _, _ in lines]
    ymin, ymax = math.floor(min(ys + [GOAL]) * 2) / 2 - 0.5, math.ceil(max(ys) * 2) / 2
    ymin = max(0.0, ymin)
    X = lambda s: L + pw * s / xmax
    Y = lambda a: T + ph * (1 - (a - ymin) / (ymax - ymin))
    esc = summarize.esc
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>', f'<text x="{L}" y="22" font-size="14">{esc(title)}</text>']
    n = int(round((ymax - ymin) / 0.25))
    for i in range(n + 1):
        a = ymin + 0.25 * i
        out.append(f'<line x1="{L}" x2="{L + pw}" y1="{Y(a):.1f}" y2="{Y(a):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{L - 6}" y="{Y(a) + 4:.1f}" text-anchor="end">{a:.2f}</text>')
    for i in range(6):
        s = xmax * i / 5
        out.append(f'<text x="{X(s):.1f}" y="{T + ph + 18}" text-anchor="middle">{s:.0f}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{L + pw / 2}" y="{H - 12}" text-anchor="middle">step</text>')
    out.append(f'<text x="16" y="{T + ph / 2}" transform="rotate(-90 16 {T + ph / 2})" text-anchor="middle">'
               f'validation bits per character</text>')
    for v, name, color in lines:
        if ymin <= v <= ymax:
            out.append(f'<line x1="{L}" x2="{L + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="{color}" '
                       f'stroke-dasharray="2,3"/>')
            out.append(f'<text x="{L + pw - 4}" y="{Y(v) - 4:.1f}" fill="{color}" text-anchor="end">'
                       f'{esc(name)} {v:.2f}</text>')
    for k, r in enumerate(runs):
        color = COLORS.get(r.get("model"), summarize.OTHER[k % len(summarize.OTHER)])
        vs = [(s, a) for s, a in summarize.series(r, "val") if ymin <= a <= ymax]
        if vs:
            poly = " ".join(f"{X(s):.1f},{Y(a):.1f}" for s, a in vs)
            out.append(f'<polyline points="{poly}" fill="none" stroke="{color}" stroke-width="2"/>')
            for s, a in vs:
                out.append(f'<circle cx="{X(s):.1f}" cy="{Y(a):.1f}" r="2.5" fill="{color}"/>')
        summarize.legend_entry(out, L + pw, T + 14 + 18 * k, color, "", r["name"])
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def fmt(x, spec=".3f"):
    return "" if x is None else format(x, spec)


def table(runs, comp, with_samples=True):
    """The runs beside the compressors; with_samples: each run's generated text below (table.md)."""
    head = ("| run | model | parameters | steps | tokens | val bpc @ end (whole split) | best val bpc in training (step) "
            "| wall time | tokens/s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in runs:
        best = f'{fmt(r.get("best_val"))} ({r.get("best_val_step", "")})' if r.get("best_val") is not None else ""
        wall = "" if r.get("wall_s") is None else f'{r["wall_s"]:.0f} s'
        tps = "" if r.get("tokens_per_s") is None else f'{r["tokens_per_s"]:.0f}'
        lines.append(f'| {r["name"]} | {r.get("model")} | {r.get("parameters")} | {r["steps"]} | {r.get("tokens")} | '
                     f'{fmt(r.get("final_val_full"))} | {best} | {wall} | {tps} |')
    for tool, c in comp.items():
        if c.get("available"):
            lines.append(f'| {tool} -9 | compressor | | | | {c["val_bpc"]:.3f} (given the training text: '
                         f'{c["val_given_train_bpc"]:.3f}) | | | |')
        else:
            lines.append(f"| {tool} -9 | compressor | | | | not installed | | | |")
    out = "\n".join(lines) + "\n"
    for r in runs if with_samples else []:
        for s in r.get("samples", []):
            out += f'\n{r["name"]}, `megagrad generate` (temperature 0.8):\n\n```text\n{s.rstrip()}\n```\n'
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--plot", required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--title", default="charlm")
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    runs = []
    for d in a.runs:
        if not os.path.exists(os.path.join(d, "metrics.jsonl")):
            continue
        r = summarize.summarize_run(d, a.window)
        r["path"] = d
        val = [v for v in r["curves"]["val"] if v.get("bpc") is not None]
        if val:  # bpc: lower is better (summarize.py's best is the largest)
            best = min(val, key=lambda v: v["bpc"])
            r["best_val"], r["best_val_step"] = best["bpc"], best["step"]
        r["final_val_full"], r["final_val_full_loss"], r["final_val_full_count"] = final_eval(d)
        if r["final_val_full_loss"] is not None:  # val.txt prints bpc to 4 digits, the loss to 4 decimals
            r["final_val_full"] = r["final_val_full_loss"] / math.log(2)
        seq_len = r["config"].get("data", {}).get("seq_len")
        if seq_len and r.get("batch_size"):  # exact: every step is batch_size windows of seq_len
            r["tokens"] = r["steps"] * r["batch_size"] * seq_len
        r["samples"] = samples(d)
        runs.append(r)
    if not runs:
        sys.exit("summarize_charlm.py: no run folder found")
    corpus = corpus_of(runs[0])
    comp, notes = {}, list(a.note)
    if corpus:
        path, train, val = corpus
        comp = compressors(train, val)
        notes.append(f"validation text: the last {len(val)} characters of {os.path.basename(path)} "
                     f"({len(train) + len(val)} bytes); compressors run on exactly these bytes")
    for r in runs:
        del r["path"]
    anchors = {f"{k} -9": c["val_bpc"] for k, c in comp.items() if c.get("available")}
    goal = {"bpc_below": GOAL, "below_compressors": sorted(anchors)}
    for r in runs:
        v = r.get("final_val_full")
        r["goal_met"] = v is not None and v < GOAL and all(v < x for x in anchors.values())
    res = {"experiment": "charlm", "notes": notes, "goal": goal, "compressors": comp, "runs": runs,
           "plots": [os.path.basename(a.plot)]}
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    plot(runs, anchors, a.plot, a.title)
    summarize.emit_table(table(runs, comp), a.table)


if __name__ == "__main__":
    main()
