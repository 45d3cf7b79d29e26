#!/usr/bin/env python3
"""Turns megagrad training runs into one results.json, an overlay SVG and a Markdown table.

Standard library only (no pip packages), so that every experiment's run.sh can call it offline.

    python3 experiments/summarize.py --experiment NAME --out OUT/results.json \
        [--plot OUT/val_accuracy.svg] [--table OUT/table.md] [--majority 0.162] RUN_DIR...

Each RUN_DIR is a folder written by run_one (experiments/lib.sh):
  metrics.jsonl   megagrad's per-step and per-evaluation log
  config.json     the run's full configuration (megagrad train ... --show-config)
  train.log       megagrad train's stdout ("N parameters; ...", "steps N in X s: T tokens/s ...")
  label           optional: the run's name in the table and the plot (default: the folder's name)
  test.txt        optional: megagrad eval --split test's output ("test accuracy 0.61 ...")
  threads         the --threads of the run
  peak_rss_kib    optional: the run's peak resident memory in KiB (/usr/bin/time -f %M)
"""
import argparse
import json
import os
import re
import sys


def read(path, default=None):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return default


def summarize_run(d, window):
    metrics = []
    for line in (read(os.path.join(d, "metrics.jsonl"), "") or "").splitlines():
        line = line.strip()
        if line:
            metrics.append(json.loads(line))
    cfg = json.loads(read(os.path.join(d, "config.json"), "{}") or "{}")
    log = read(os.path.join(d, "train.log"), "") or ""
    label = (read(os.path.join(d, "label"), "") or "").strip() or os.path.basename(os.path.normpath(d))
    metric = "accuracy"
    train = [m for m in metrics if m.get("split") == "train"]
    val = [m for m in metrics if m.get("split") == "val"]
    if val:
        keys = [k for k in val[0] if k not in ("step", "split", "loss", "elapsed_s")]
        if keys:
            metric = keys[0]
    run = {"name": label, "dir": os.path.basename(os.path.normpath(d))}
    model = cfg.get("model", {})
    tr = cfg.get("train", {})
    run["model"] = model.get("type")
    m = re.search(r"(\d+) parameters;", log)
    run["parameters"] = int(m.group(1)) if m else None
    run["steps"] = train[-1]["step"] if train else 0
    run["steps_planned"] = tr.get("steps")
    run["batch_size"] = tr.get("batch_size")
    run["seed"] = tr.get("seed")
    run["data_seed"] = cfg.get("data", {}).get("seed")
    threads = (read(os.path.join(d, "threads"), "") or "").strip()
    run["threads"] = int(threads) if threads.isdigit() else None
    m = re.search(r"steps (\d+) in ([0-9.]+) s: ([0-9.]+) tokens/s", log)
    if m:
        run["wall_s"] = float(m.group(2))
        run["tokens_per_s"] = float(m.group(3))
        run["tokens"] = int(round(float(m.group(2)) * float(m.group(3))))
    else:
        run["wall_s"] = run["tokens_per_s"] = run["tokens"] = None
    rss = (read(os.path.join(d, "peak_rss_kib"), "") or "").strip().splitlines()
    if rss and rss[-1].isdigit():
        run["peak_rss_mib"] = round(int(rss[-1]) / 1024, 1)
    run["metric"] = metric
    if val:
        run["final_val"] = val[-1].get(metric)
        best = max(val, key=lambda v: v.get(metric, float("-inf")))
        run["best_val"] = best.get(metric)
        run["best_val_step"] = best["step"]
        run["final_val_loss"] = val[-1].get("loss")
    test = read(os.path.join(d, "test.txt"))
    if test:
        m = re.search(r"test \S+ ([0-9.eE+-]+) \(loss ([0-9.eE+-]+), (\d+) predictions\)", test)
        if m:
            run["test"] = float(m.group(1))
            run["test_loss"] = float(m.group(2))
            run["test_count"] = int(m.group(3))
    run["config"] = cfg
    # Curves: every evaluation, and the training loss/metric averaged over windows of `window` steps
    # (a per-step log of thousands of lines would swamp the file).
    run["curves"] = {
        "val": [{"step": v["step"], "loss": v.get("loss"), metric: v.get(metric)} for v in val],
        "train_window": window,
        "train": [],
    }
    for i in range(0, len(train), window):
        chunk = train[i:i + window]
        run["curves"]["train"].append({
            "step": chunk[-1]["step"],
            "loss": sum(c["loss"] for c in chunk) / len(chunk),
            "grad_norm": sum(c.get("grad_norm", 0.0) for c in chunk) / len(chunk),
            metric: sum(c.get(metric, 0.0) for c in chunk) / len(chunk),
        })
    return run


COLORS = {"mega": ["#1f77b4", "#6baed6", "#08519c", "#9ecae1"],
          "transformer": ["#ff7f0e", "#fdae6b", "#a63603", "#fdd0a2"]}
OTHER = ["#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
         "#393b79", "#637939", "#8c6d31", "#843c39"]


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def series(r, kind):
    """(step, value) points of a run: 'val' (validation metric), or a training curve key."""
    if kind == "val":
        return [(v["step"], v[r["metric"]]) for v in r["curves"]["val"] if v.get(r["metric"]) is not None]
    return [(v["step"], v[kind]) for v in r["curves"]["train"] if v.get(kind) is not None]


def plot(runs, path, title, majority, kind="val"):
    W, H, L, R, T, B = 760, 440, 60, 230, 40, 50
    pw, ph = W - L - R, H - T - B
    pts = [p for r in runs for p in series(r, kind)]
    xmax = max([p[0] for p in pts] + [1])
    if kind == "val":
        ymax = max([p[1] for p in pts] + [majority or 0, 10])  # percent
        ymax = min(100.0, (int(ymax / 10) + 1) * 10.0)
        unit, ylabel = "%", "validation accuracy"
    else:
        majority = None
        ymax = max([p[1] for p in pts] + [1e-9]) * 1.05
        unit, ylabel = "", {"loss": "training loss (mean over %d steps)", "grad_norm":
                            "gradient norm before clipping (mean over %d steps)"}.get(kind, kind)
        if "%d" in ylabel:
            ylabel = ylabel % runs[0]["curves"]["train_window"]
    X = lambda s: L + pw * s / xmax
    Y = lambda a: T + ph * (1 - a / ymax)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="22" font-size="14">{esc(title)}</text>']
    for i in range(0, 11):
        a = ymax * i / 10
        out.append(f'<line x1="{L}" x2="{L + pw}" y1="{Y(a):.1f}" y2="{Y(a):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{L - 6}" y="{Y(a) + 4:.1f}" text-anchor="end">{a:.{0 if unit else 2}f}{unit}</text>')
    for i in range(0, 6):
        s = xmax * i / 5
        out.append(f'<text x="{X(s):.1f}" y="{T + ph + 18}" text-anchor="middle">{s:.0f}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{L + pw / 2}" y="{H - 12}" text-anchor="middle">step</text>')
    out.append(f'<text x="16" y="{T + ph / 2}" transform="rotate(-90 16 {T + ph / 2})" text-anchor="middle">'
               f'{ylabel}</text>')
    if majority:
        out.append(f'<line x1="{L}" x2="{L + pw}" y1="{Y(majority):.1f}" y2="{Y(majority):.1f}" stroke="#999" '
                   f'stroke-dasharray="2,3"/>')
        out.append(f'<text x="{L + 4}" y="{Y(majority) + 14:.1f}" fill="#777">majority class '
                   f'{majority:.1f}%</text>')
    used = {}
    per_type = {}
    for r in runs:
        per_type[r.get("model")] = per_type.get(r.get("model"), 0) + 1
    by_model = max(per_type.values()) <= 4  # a few seeds per model: colour by model, dash by seed
    for k, r in enumerate(runs):
        typ = r.get("model") or ""
        n = used.get(typ, 0)
        used[typ] = n + 1
        pal = COLORS.get(typ) if by_model else None
        color = pal[n % len(pal)] if pal else OTHER[k % len(OTHER)]
        dash = ' stroke-dasharray="6,3"' if (pal and n % 2 == 1) else ""
        vs = series(r, kind)
        if not vs:
            continue
        poly = " ".join(f"{X(s):.1f},{Y(a):.1f}" for s, a in vs)
        out.append(f'<polyline points="{poly}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for s, a in vs:
            out.append(f'<circle cx="{X(s):.1f}" cy="{Y(a):.1f}" r="2.5" fill="{color}"/>')
        legend_entry(out, L + pw, T + 14 + 18 * k, color, dash, r["name"])
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def fit_slope(points):
    """Least-squares slope of log(y) against log(x) over (x, y) points (None with fewer than 2)."""
    import math
    pts = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx > 0 else None


def loglog_plot(series, path, title, xlabel, ylabel, limit=None, limit_label=""):
    """An SVG with log-log axes. series: [{"name", "points": [(x, y)], "color", "dash", "note" (a line or lines),
    "predicted": [(x, y)]}] (predicted: open circles joined to the last point by a dotted line, e.g.
    a point extrapolated and not run); limit: a horizontal dotted line (e.g. a memory budget) at
    y = limit, labelled limit_label."""
    import math
    W, H, L, R, T, B = 900, 440, 70, 390, 40, 50
    pw, ph = W - L - R, H - T - B
    xs = [x for s in series for x, _ in s["points"] + s.get("predicted", [])] or [1, 2]
    ys = [y for s in series for _, y in s["points"] + s.get("predicted", [])] + ([limit] if limit else [])
    ys = [y for y in ys if y > 0] or [1, 10]
    x0, x1 = math.log10(min(xs)), math.log10(max(xs))
    if x1 - x0 < 1e-9:
        x0, x1 = x0 - 0.5, x1 + 0.5
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    if y1 == y0:
        y1 += 1
    pad = (x1 - x0) * 0.04
    x0, x1 = x0 - pad, x1 + pad
    X = lambda v: L + pw * (math.log10(v) - x0) / (x1 - x0)
    Y = lambda v: T + ph * (1 - (math.log10(v) - y0) / (y1 - y0))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="22" font-size="14">{esc(title)}</text>']
    for e in range(int(y0), int(y1) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if not (10 ** y0 <= v <= 10 ** y1):
                continue
            out.append(f'<line x1="{L}" x2="{L + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="{"#ddd" if m == 1 else "#f2f2f2"}"/>')
            out.append(f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    for x in sorted(set(xs)):
        out.append(f'<line x1="{X(x):.1f}" x2="{X(x):.1f}" y1="{T}" y2="{T + ph}" stroke="#f2f2f2"/>')
        out.append(f'<text x="{X(x):.1f}" y="{T + ph + 18}" text-anchor="middle">{x:g}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{L + pw / 2}" y="{H - 12}" text-anchor="middle">{esc(xlabel)}</text>')
    out.append(f'<text x="16" y="{T + ph / 2}" transform="rotate(-90 16 {T + ph / 2})" text-anchor="middle">'
               f'{esc(ylabel)}</text>')
    if limit:
        out.append(f'<line x1="{L}" x2="{L + pw}" y1="{Y(limit):.1f}" y2="{Y(limit):.1f}" stroke="#d62728" '
                   f'stroke-dasharray="2,3"/>')
        out.append(f'<text x="{L + 4}" y="{Y(limit) - 5:.1f}" fill="#d62728">{esc(limit_label)}</text>')
    for k, s in enumerate(series):
        color = s.get("color") or OTHER[k % len(OTHER)]
        dash = ' stroke-dasharray="6,3"' if s.get("dash") else ""
        pts = sorted(s["points"])
        if pts:
            poly = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
            out.append(f'<polyline points="{poly}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
            for x, y in pts:
                out.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3" fill="{color}"/>')
        pred = sorted(s.get("predicted", []))
        if pred:
            poly = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts[-1:] + pred)
            out.append(f'<polyline points="{poly}" fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="1,3"/>')
            for x, y in pred:
                out.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="4" fill="white" stroke="{color}" stroke-width="1.5"/>')
        ly = T + 14 + 48 * k
        legend_entry(out, L + pw, ly, color, dash, s["name"])
        notes = s.get("note") or []
        for i, line in enumerate([notes] if isinstance(notes, str) else notes):
            out.append(f'<text x="{L + pw + 42}" y="{ly + 15 + 13 * i}" fill="#555" font-size="11">{esc(line)}</text>')
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def pct(x):  # megagrad's accuracy is in percent
    return "" if x is None else f"{x:.1f}%"


def table(runs):
    has_test = any("test" in r for r in runs)
    has_rss = any(r.get("peak_rss_mib") is not None for r in runs)
    head = "| run | model | parameters | steps | val acc @ end | val loss @ end | best val acc (step) |" + \
        (" test acc |" if has_test else "") + " wall time | tokens/s |" + (" peak RSS |" if has_rss else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in runs:
        best = f'{pct(r.get("best_val"))} ({r.get("best_val_step", "")})' if r.get("best_val") is not None else ""
        loss = "" if r.get("final_val_loss") is None else f'{r["final_val_loss"]:.3f}'
        row = f'| {r["name"]} | {r.get("model")} | {r.get("parameters")} | {r["steps"]} | {pct(r.get("final_val"))} | ' \
              f'{loss} | {best} |'
        if has_test:
            row += f' {pct(r.get("test"))} |'
        wall = "" if r.get("wall_s") is None else f'{r["wall_s"]:.0f} s'
        tps = "" if r.get("tokens_per_s") is None else f'{r["tokens_per_s"]:.0f}'
        row += f" {wall} | {tps} |"
        if has_rss:
            row += "" if r.get("peak_rss_mib") is None else f' {r["peak_rss_mib"]:.0f} MiB |'
        lines.append(row)
    return "\n".join(lines) + "\n"


def legend_entry(out, x, ly, color, dash, name):
    """A legend line and its label at the right of a plot whose data ends at x."""
    out.append(f'<line x1="{x + 12}" x2="{x + 36}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" '
               f'stroke-width="2"{dash}/>')
    out.append(f'<text x="{x + 42}" y="{ly}">{esc(name)}</text>')


def emit_table(t, path):
    """Prints a markdown table, and writes it to path too when one is given."""
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(t)
    sys.stdout.write(t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--out", required=True, help="results.json to write")
    ap.add_argument("--plot", help="overlay SVG of validation accuracy against step")
    ap.add_argument("--plot-train", help="SVG prefix for the training curves: PREFIX_loss.svg, PREFIX_grad_norm.svg")
    ap.add_argument("--table", help="Markdown table to write")
    ap.add_argument("--title", default=None)
    ap.add_argument("--majority", type=float, default=None, help="majority-class accuracy in percent (a dotted line)")
    ap.add_argument("--window", type=int, default=50, help="steps per point of the training curves")
    ap.add_argument("--note", action="append", default=[], help="a line of text kept in results.json")
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    runs = [summarize_run(d, a.window) for d in a.runs if os.path.exists(os.path.join(d, "metrics.jsonl"))]
    if not runs:
        sys.exit("summarize.py: no run folder found")
    res = {"experiment": a.experiment, "notes": a.note, "majority_class": a.majority, "runs": runs}
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    if a.plot:
        plot(runs, a.plot, a.title or a.experiment, a.majority)
    if a.plot_train:
        for kind in ("loss", "grad_norm"):
            plot(runs, f"{a.plot_train}_{kind}.svg", a.title or a.experiment, None, kind)
    emit_table(table(runs), a.table)


if __name__ == "__main__":
    main()
