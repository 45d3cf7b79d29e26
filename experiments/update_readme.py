#!/usr/bin/env python3
"""Regenerates the results tables of README.md's "Experiments" section from the committed files.

    python3 experiments/update_readme.py [README.md]

Each block between `<!-- results: PATH -->` and `<!-- /results -->` is replaced with the table of
PATH (a results.json, through summarize.table). Standard library only.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import summarize  # noqa: E402


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
        if res.get("experiment") == "scaling":  # time and memory against L: its own table
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "scaling"))
            import summarize_scaling  # noqa: E402
            return f"<!-- results: {path} -->\n{summarize_scaling.table(res)}<!-- /results -->"
        if res.get("experiment") == "charlm":  # bits per character beside the compressors
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "charlm"))
            import summarize_charlm  # noqa: E402
            return f"<!-- results: {path} -->\n{summarize_charlm.table(res['runs'], res['compressors'], False)}<!-- /results -->"
        if res.get("experiment") == "translate":  # BLEU and chrF2 at two beams, decoding speed
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "translate"))
            import summarize_translate  # noqa: E402
            return f"<!-- results: {path} -->\n{summarize_translate.table(res)}<!-- /results -->"
        return f"<!-- results: {path} -->\n{summarize.table(res['runs'])}<!-- /results -->"

    new, n = re.subn(r"<!-- results: (.*?) -->.*?<!-- /results -->", repl, text, flags=re.S)
    with open(readme, "w", encoding="utf-8") as f:
        f.write(new)
    print(f"update_readme.py: {n} table(s) regenerated in {readme}")


if __name__ == "__main__":
    main()
