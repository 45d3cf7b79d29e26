#!/usr/bin/env python3
"""Turns the scaling experiment's point folders into results.json, a table and two log-log plots.

    python3 experiments/scaling/summarize_scaling.py --out OUT/results.json --table OUT/table.md \\
        --plot-time OUT/time.svg --plot-memory OUT/memory.svg OUT

OUT/<model>/L<L>/ holds a measured point (bench.json, bench.txt, config.json, threads,
loadavg_before/after) or a point not run (skipped: why) or a run that failed (failed: why).
Standard library only.
"""
import argparse
import glob
import json
import os
import platform
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import summarize  # noqa: E402

LABELS = {"mega": "Mega (full attention)", "mega_chunk": "Mega-chunk", "transformer": "Transformer"}
COLORS = {"mega": "#1f77b4", "mega_chunk": "#2ca02c", "mega_chunk128": "#2ca02c", "mega_chunk256": "#9467bd",
          "transformer": "#ff7f0e"}
ORDER = ["mega", "mega_chunk", "mega_chunk128", "mega_chunk256", "transformer"]


# The order assumed for a model's time and memory when its next point is extrapolated: at least
# quadratic for full attention, at least linear with chunks (the fitted slope when it is larger).
ORDER_ASSUMED = {"mega": 2.0, "mega_chunk": 1.0, "transformer": 2.0}


def label(model, points=()):
    """The model's name; Mega-chunk with its chunk size (from the name, or its points' chunk_size)."""
    m = re.fullmatch(r"mega_chunk(\d+)", model)
    if m:
        return f"Mega-chunk {m.group(1)}"
    chunks = {p.get("chunk_size") for p in points if p.get("chunk_size")}
    if model == "mega_chunk" and len(chunks) == 1:
        return f"Mega-chunk {chunks.pop()}"
    return LABELS.get(model, model)


def order_assumed(model):
    return 1.0 if model.startswith("mega_chunk") else ORDER_ASSUMED.get(model, 2.0)


def predict(points, L, kind, order):
    """The value of `kind` (peak_rss_mib or step_ms) at length L, extrapolated from the measured
    points [(seq_len, value)]: from the last point, with the slope of the last two on log-log
    axes, never below `order`; None without a point. run.sh decides with it which points to run."""
    import math
    pts = sorted(points)
    if not pts:
        return None
    slope = order
    if len(pts) >= 2:
        (l0, v0), (l1, v1) = pts[-2], pts[-1]
        slope = max(order, math.log(v1 / v0) / math.log(l1 / l0))
    l1, v1 = pts[-1]
    return v1 * (L / l1) ** slope


def cpu_name():
    for line in (summarize.read("/proc/cpuinfo", "") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None


def collect(root):
    models = {}
    for d in sorted(glob.glob(os.path.join(root, "*", "L*"))):
        model = os.path.basename(os.path.dirname(d))
        m = re.fullmatch(r"L(\d+)", os.path.basename(d))
        if not m:
            continue
        L = int(m.group(1))
        p = {"seq_len": L}
        bench = summarize.read(os.path.join(d, "bench.json"))
        if bench:
            j = json.loads(bench)
            p.update(status="measured", **{k: j[k] for k in (
                "step_ms", "step_min_ms", "forward_ms", "backward_ms", "optimizer_ms", "warmup_step_ms", "iters",
                "peak_rss_mib", "rss_before_mib", "cache_free_mib", "parameters", "threads", "openblas_core",
                "chunk_size", "batch_size", "loss", "seed") if k in j})
            p["steps"] = j["iters"] + 1
            for w in ("before", "after"):
                la = summarize.read(os.path.join(d, f"loadavg_{w}"))
                if la:
                    p[f"load_{w}"] = float(la.split()[0])
            pred = summarize.read(os.path.join(d, "predicted"), "") or ""
            mm = re.search(r"peak_rss_mib ([0-9.]+) step_ms ([0-9.]+)", pred)
            if mm:
                p["predicted_peak_rss_mib"], p["predicted_step_ms"] = float(mm.group(1)), float(mm.group(2))
        elif summarize.read(os.path.join(d, "failed")):
            p.update(status="failed", reason=summarize.read(os.path.join(d, "failed")).strip())
        elif summarize.read(os.path.join(d, "skipped")):
            reason = summarize.read(os.path.join(d, "skipped")).strip()
            p.update(status="stopped" if reason.startswith("stopped") else "not run", reason=reason)
        else:
            continue
        cfg = summarize.read(os.path.join(d, "config.json"))
        if cfg and "config" not in models.get(model, {}):
            models.setdefault(model, {})["config"] = json.loads(cfg)
        models.setdefault(model, {}).setdefault("points", []).append(p)
    for name, m in models.items():
        m["points"].sort(key=lambda p: p["seq_len"])
        m["order_assumed"] = order_assumed(name)
        # The extrapolation that stopped the model (as run.sh computed it from the same points).
        meas = [p for p in m["points"] if p["status"] == "measured"]
        first = next((p for p in m["points"] if p["status"] != "measured"), None)
        if first and first["status"] != "failed" and re.match(r"(stopped|not run): predicted", first["reason"]):
            # Only the quantity that stopped it: memory ("GiB") or time ("per step").
            kind = "peak_rss_mib" if "GiB" in first["reason"] else "step_ms"
            v = predict([(q["seq_len"], q[kind]) for q in meas], first["seq_len"], kind, m["order_assumed"])
            first["predicted_" + kind] = None if v is None else round(v, 1)
    return models


def slopes(points):
    meas = [p for p in points if p["status"] == "measured"]
    t = [(p["seq_len"], p["step_ms"]) for p in meas]
    mem = [(p["seq_len"], p["peak_rss_mib"]) for p in meas]
    act = [(p["seq_len"], p["peak_rss_mib"] - p["rss_before_mib"]) for p in meas]
    last = lambda xs: xs[-3:]
    return {
        "time_all": summarize.fit_slope(t), "time_last3": summarize.fit_slope(last(t)),
        "memory_all": summarize.fit_slope(mem), "memory_last3": summarize.fit_slope(last(mem)),
        "memory_above_start_all": summarize.fit_slope(act), "memory_above_start_last3": summarize.fit_slope(last(act)),
        "lengths": [p["seq_len"] for p in meas],
    }


def f2(x):
    return "" if x is None else f"{x:.2f}"


def table(res):
    models = [m for m in ORDER if m in res["models"]] + [m for m in res["models"] if m not in ORDER]
    Ls = sorted({p["seq_len"] for m in models for p in res["models"][m]["points"]})
    head = "| L |" + "".join(f" {label(m, res['models'][m]['points'])}: ms/step | peak MiB |" for m in models)
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    notes = []
    for L in Ls:
        row = f"| {L} |"
        for m in models:
            p = next((q for q in res["models"][m]["points"] if q["seq_len"] == L), None)
            if p is None:
                row += " | |"
            elif p["status"] == "measured":
                ms = p["step_ms"]
                row += f' {ms:.0f} | {p["peak_rss_mib"]:.0f} |' if ms >= 100 else f' {ms:.1f} | {p["peak_rss_mib"]:.0f} |'
            else:
                reason = p["reason"]
                if reason not in notes:
                    notes.append(reason)
                row += f" {p['status']} ({notes.index(reason) + 1}) | |"
        lines.append(row)
    lines.append("")
    lines.append("| model | parameters (at the longest L run) | time slope: all points / last 3 | peak-memory slope: all / last 3 | slope of the peak above the start-up RSS: all / last 3 |")
    lines.append("|---|---|---|---|---|")
    for m in models:
        s = res["models"][m]["slopes"]
        meas = [p for p in res["models"][m]["points"] if p["status"] == "measured"]
        params = meas[-1]["parameters"] if meas else ""
        lines.append(f"| {label(m, res['models'][m]['points'])} | {params} | {f2(s['time_all'])} / {f2(s['time_last3'])} | "
                     f"{f2(s['memory_all'])} / {f2(s['memory_last3'])} | "
                     f"{f2(s['memory_above_start_all'])} / {f2(s['memory_above_start_last3'])} |")
    if notes:
        lines.append("")
        for i, n in enumerate(notes):
            lines.append(f"({i + 1}) {n}  ")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--table")
    ap.add_argument("--plot-time")
    ap.add_argument("--plot-memory")
    ap.add_argument("--mem-limit-gib", type=float, default=16)
    ap.add_argument("--time-limit-s", type=float, default=60)
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--predict", nargs=3, metavar=("MODEL", "L", "KIND"),
                    help="print the extrapolated KIND (peak_rss_mib, step_ms) of MODEL at L from the points in ROOT, and exit")
    ap.add_argument("root")
    a = ap.parse_args()
    if a.predict:
        model, L, kind = a.predict[0], int(a.predict[1]), a.predict[2]
        pts = [(p["seq_len"], p[kind]) for p in collect(a.root).get(model, {}).get("points", []) if p["status"] == "measured"]
        v = predict(pts, L, kind, order_assumed(model))
        print("" if v is None else f"{v:.1f}")
        return
    if not a.out:
        ap.error("--out is required")
    models = collect(a.root)
    if not models:
        sys.exit("summarize_scaling.py: no point folder found")
    for name, m in models.items():
        m["slopes"] = slopes(m["points"])

    meas = [p for m in models.values() for p in m["points"] if p["status"] == "measured"]
    res = {
        "experiment": "scaling",
        "notes": a.note,
        "plots": [os.path.basename(p) for p in (a.plot_time, a.plot_memory) if p],
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                    "openblas_core": meas[0].get("openblas_core") if meas else None},
        "threads": sorted({p.get("threads") for p in meas}),
        "batch_size": sorted({p.get("batch_size") for p in meas}),
        "seed": sorted({p.get("seed") for p in meas if p.get("seed") is not None}),
        "mem_limit_gib": a.mem_limit_gib, "time_limit_s": a.time_limit_s,
        "lengths": sorted({p["seq_len"] for m in models.values() for p in m["points"]}),
        "models": {k: {"label": label(k, v["points"]), **v} for k, v in models.items()},
        # One entry per measured point, in the shape experiments/ci.sh checks (steps > 0).
        "runs": [{"name": f"{label(k, v['points'])} L={p['seq_len']}", "model": k, **p}
                 for k, v in models.items() for p in v["points"] if p["status"] == "measured"],
    }
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    order = [m for m in ORDER if m in models] + [m for m in models if m not in ORDER]
    batch = "/".join(str(b) for b in res["batch_size"])
    threads = "/".join(str(t) for t in res["threads"])

    def series(key, scale, slope_key):
        out = []
        for m in order:
            pts = [(p["seq_len"], p[key] * scale) for p in models[m]["points"] if p["status"] == "measured"]
            s = models[m]["slopes"]
            note = [f"slope {f2(s[slope_key + '_all'])} (last 3: {f2(s[slope_key + '_last3'])})"]
            pred = [(p["seq_len"], p["predicted_" + key] * scale) for p in models[m]["points"]
                    if p.get("predicted_" + key) is not None and p["status"] != "measured"]
            stopped = next((p for p in models[m]["points"] if p["status"] != "measured"), None)
            if stopped:
                on = "memory" if "GiB" in stopped["reason"] else "time" if "per step" in stopped["reason"] else "failed"
                note.append(f"{stopped['status']} at L={stopped['seq_len']} on {on}"
                            + (" (open circle: predicted)" if pred else ""))
            out.append({"name": label(m, models[m]["points"]), "points": pts, "color": COLORS.get(m), "note": note,
                        "predicted": pred, "dash": m.startswith("mega_chunk")})
        return out

    if a.plot_time:
        summarize.loglog_plot(series("step_ms", 1e-3, "time"), a.plot_time,
                              f"One training step (fwd+bwd+AdamW), batch {batch}, {threads} thread(s): time against L",
                              "sequence length L (tokens)", "seconds per step", a.time_limit_s,
                              f"{a.time_limit_s:g} s per step")
    if a.plot_memory:
        summarize.loglog_plot(series("peak_rss_mib", 1 / 1024, "memory"), a.plot_memory,
                              f"One training step, batch {batch}: peak resident memory against L",
                              "sequence length L (tokens)", "peak RSS (GiB)", a.mem_limit_gib,
                              f"{a.mem_limit_gib:g} GiB")
    summarize.emit_table(table(res), a.table)


if __name__ == "__main__":
    main()
