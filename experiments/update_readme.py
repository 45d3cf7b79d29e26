#!/usr/bin/env python3
"""Regenerates the results tables of README.md's "Experiments" section from the committed files.

    python3 experiments/update_readme.py [README.md]

Each block between `<!-- results: PATH -->` and `<!-- /results -->` is replaced with the table of
PATH (a results.json, through summarize.table). Standard library only.
"""
import importlib
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import summarize  # noqa: E402


# Experiments whose table is their own: experiment -> (its folder, its summarize module, the table).
OWN_TABLES = {
    "scaling": ("scaling", "summarize_scaling", lambda m, res: m.table(res)),  # time and memory against L
    "charlm": ("charlm", "summarize_charlm",  # bits per character beside the compressors
               lambda m, res: m.table(res["runs"], res["compressors"], False)),
    "translate": ("translate", "summarize_translate", lambda m, res: m.table(res)),  # BLEU, chrF2, decoding
}


def table_of(res):
    """The Markdown table of one results.json: its experiment's own, else summarize.table."""
    own = OWN_TABLES.get(res.get("experiment"))
    if not own:
        return summarize.table(res["runs"])
    folder, module, make = own
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), folder))
    return make(importlib.import_module(module), res)


def main():
    readme = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "README.md")
    root = os.path.dirname(os.path.abspath(readme))
    text = open(readme, encoding="utf-8").read()

    def repl(m):
        path = m.group(1).strip()
        if not os.path.exists(os.path.join(root, path)):
            print(f"update_readme.py: {path} is missing: its block is left as it is", file=sys.stderr)
            return m.group(0)
        with open(os.path.join(root, path), encoding="utf-8") as f:
            res = json.load(f)
        return f"<!-- results: {path} -->\n{table_of(res)}<!-- /results -->"

    new, n = re.subn(r"<!-- results: (.*?) -->.*?<!-- /results -->", repl, text, flags=re.S)
    with open(readme, "w", encoding="utf-8") as f:
        f.write(new)
    print(f"update_readme.py: {n} table(s) regenerated in {readme}")


if __name__ == "__main__":
    main()
