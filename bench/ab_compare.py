#!/usr/bin/env python3
"""Summarises a run of bench/ab_builds.sh: for every figure that both builds printed, the median
over the rounds of build A and of build B, and B / A.

    python3 bench/ab_compare.py OUT_DIR

Figures, and which way is better:
  bench_core   the last column of each row: megagrad against a baseline measured in the same
               run (sgemm, or a copy loop), so the machine's load cancels. Higher is better.
  bench_mega   the composed reference's ms and the fused op's ms. Lower is better.
  bench-layer  forward_ms, forward_backward_ms (lower is better) and peak_rss_mib.
A ratio B / A that says "worse" beyond the spread of the rounds is worth a second look.
"""
import json
import os
import re
import statistics
import sys

NUM = re.compile(r"^-?\d+(\.\d+)?x?$")


def table_rows(path):
    """name -> list of the numbers of a row (text columns first, numbers after)."""
    rows = {}
    section = ""
    with open(path) as f:
        for line in f:
            line = re.sub(r"\s+\(target[^)]*\)\s*$", "", line.rstrip("\n"))  # a note after the numbers
            if not line.strip():
                continue
            parts = line.split()
            nums, k = [], len(parts)
            while k > 0 and NUM.match(parts[k - 1]):
                k -= 1
            nums = [float(p.rstrip("x")) for p in parts[k:]]
            name = " ".join(parts[:k])
            if not nums:
                # a header or a trailing note: the header names the section of the rows below it
                if "(" in line and ("ms" in line or "GB/s" in line or "GFLOP" in line):
                    section = parts[0]
                continue
            rows[f"{section} {name}".strip()] = nums
    return rows


def collect(out):
    """{'A': {figure: [values over rounds]}, 'B': ...} and each figure's 'better' direction."""
    data = {"A": {}, "B": {}}
    better = {}
    for d in sorted(os.listdir(out)):
        m = re.match(r"^([AB])-(\d+)$", d)
        if not m:
            continue
        build, path = m.group(1), os.path.join(out, d)
        figs = data[build]
        core = os.path.join(path, "bench_core.txt")
        if os.path.exists(core):
            for name, nums in table_rows(core).items():
                if len(nums) >= 2:
                    key = f"bench_core {name} (vs baseline)"
                    figs.setdefault(key, []).append(nums[-1])
                    better[key] = "higher"
        mega = os.path.join(path, "bench_mega.txt")
        if os.path.exists(mega):
            for name, nums in table_rows(mega).items():
                if len(nums) == 3:  # ref ms, fused ms, speed-up
                    for i, what in ((0, "ref ms"), (1, "fused ms")):
                        key = f"bench_mega {name}: {what}"
                        figs.setdefault(key, []).append(nums[i])
                        better[key] = "lower"
        for f in sorted(os.listdir(path)):
            if f.startswith("layer-") and f.endswith(".json"):
                cfg = f[len("layer-"):-len(".json")]
                with open(os.path.join(path, f)) as fh:
                    j = json.load(fh)
                for field in ("forward_ms", "forward_backward_ms", "peak_rss_mib"):
                    if field in j:
                        key = f"bench-layer {cfg}: {field}"
                        figs.setdefault(key, []).append(float(j[field]))
                        better[key] = "lower"
    return data, better


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    data, better = collect(sys.argv[1])
    keys = [k for k in data["A"] if k in data["B"]]
    if not keys:
        print("ab_compare: no figure that both builds printed", file=sys.stderr)
        sys.exit(1)
    rounds = max(len(v) for v in data["A"].values())
    print(f"{'figure':<78} {'A':>10} {'B':>10} {'B/A':>7}  (medians of {rounds} rounds; better: B/A)")
    worse = 0
    for k in keys:
        a, b = statistics.median(data["A"][k]), statistics.median(data["B"][k])
        r = b / a if a else float("nan")
        tag = ""
        if better[k] == "lower" and r > 1.05 or better[k] == "higher" and r < 1 / 1.05:
            tag, worse = "  <- worse by > 5%", worse + 1
        lo_hi = "<1 better" if better[k] == "lower" else ">1 better"
        print(f"{k:<78} {a:>10.3f} {b:>10.3f} {r:>7.3f}  ({lo_hi}){tag}")
    print(f"{worse} of {len(keys)} figures worse by more than 5% in B")


if __name__ == "__main__":
    main()
