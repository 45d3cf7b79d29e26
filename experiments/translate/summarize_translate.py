#!/usr/bin/env python3
"""Adds the translation scores to OUT/results.json (written by summarize.py) and writes
OUT/table.md and OUT/examples.md.

    python3 experiments/translate/summarize_translate.py OUT

Reads, in each run folder OUT/<model>/: test.txt and test_beam1.txt (megagrad eval --split test
at beam 4 and 1: "test BLEU = 12.34 ...", "test chrF2 = 34.56 (beam 4, 879 sentences, 28.1 s,
1.23 ms per generated token)"), examples.tsv (source<TAB>reference) and examples.txt (one
translation per line). Standard library only.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import summarize  # noqa: E402

BLEU = re.compile(r"^test BLEU = ([0-9.]+) (\S+) \(BP = ([0-9.]+) ratio = ([0-9.]+)", re.M)
CHRF = re.compile(r"^test chrF2 = ([0-9.]+) \(beam (\d+), (\d+) sentences, ([0-9.]+) s, ([0-9.]+) ms per generated token\)", re.M)


def read(path):
    """The file's text; exits naming the file when it is missing."""
    text = summarize.read(path)
    if text is None:
        sys.exit(f"summarize_translate.py: {path} is missing")
    return text


def scores(path):
    """BLEU, chrF2 and decoding speed of one eval output; exits naming the file if absent."""
    text = read(path)
    b, c = BLEU.search(text), CHRF.search(text)
    if not b or not c:
        sys.exit(f"summarize_translate.py: {path} has no BLEU/chrF2 lines")
    return {"bleu": float(b.group(1)), "precisions": b.group(2), "bp": float(b.group(3)),
            "length_ratio": float(b.group(4)), "chrf2": float(c.group(1)), "beam": int(c.group(2)),
            "sentences": int(c.group(3)), "decode_s": float(c.group(4)), "ms_per_token": float(c.group(5))}


def cell(s):
    return s.replace("|", "\\|").strip()


def table(res):
    """The Markdown table of the runs' scores (also README.md's, through update_readme.py)."""
    head = ("| model | parameters | steps | threads | wall time | training tokens/s | val acc | test acc | "
            "BLEU beam 4 | chrF2 beam 4 | ms/token beam 4 | BLEU beam 1 | chrF2 beam 1 | ms/token beam 1 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in res["runs"]:
        b4, b1 = r["test_beam4"], r["test_beam1"]
        acc = lambda x: "" if x is None else f"{x:.1f}%"
        lines.append(f'| {r["name"]} | {r["parameters"]} | {r["steps"]} | {r["threads"]} | {r["wall_s"]:.0f} s | '
                     f'{r["tokens_per_s"]:.0f} | {acc(r.get("final_val"))} | {acc(r.get("test"))} | '
                     f'{b4["bleu"]:.2f} | {b4["chrf2"]:.2f} | {b4["ms_per_token"]:.2f} | '
                     f'{b1["bleu"]:.2f} | {b1["chrf2"]:.2f} | {b1["ms_per_token"]:.2f} |')
    n = res["runs"][0]["test_beam4"]["sentences"]
    lines.append("")
    lines.append(f"BLEU (sacreBLEU's 13a, exp smoothing) and chrF2 over the first {n} verses of John; "
                 "ms/token: decoding time per generated target token, one thread; "
                 "tokens/s: target tokens per second of training.")
    return "\n".join(lines) + "\n"


def main():
    out = sys.argv[1]
    res_path = os.path.join(out, "results.json")
    res = json.loads(read(res_path))
    res["plots"] = ["val_accuracy.svg"]
    examples = {}
    for run in res["runs"]:
        d = os.path.join(out, run["dir"])
        run["test_beam4"] = scores(os.path.join(d, "test.txt"))
        run["test_beam1"] = scores(os.path.join(d, "test_beam1.txt"))
        pairs = [l.split("\t") for l in read(os.path.join(d, "examples.tsv")).splitlines()]
        hyps = read(os.path.join(d, "examples.txt")).splitlines()
        if len(hyps) != len(pairs):
            sys.exit(f"summarize_translate.py: {d}: {len(pairs)} example verses but {len(hyps)} translations")
        run["examples"] = [{"source": p[0], "reference": p[1], "translation": h} for p, h in zip(pairs, hyps)]
        examples[run["name"]] = run["examples"]
    with open(res_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    os.replace(res_path + ".tmp", res_path)

    text = table(res)
    with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
        f.write(text)
    sys.stdout.write(text)

    names = list(examples)
    ex = ["| source (Spanish) | reference (KJV) | " + " | ".join(names) + " |",
          "|---|---|" + "---|" * len(names)]
    for i, e in enumerate(examples[names[0]]):
        ex.append(f'| {cell(e["source"])} | {cell(e["reference"])} | ' +
                  " | ".join(cell(examples[m][i]["translation"]) for m in names) + " |")
    with open(os.path.join(out, "examples.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(ex) + "\n")


if __name__ == "__main__":
    main()
