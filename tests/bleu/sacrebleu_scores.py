#!/usr/bin/env python3
"""sacreBLEU's own numbers for tests/test_bleu.cpp: `sacrebleu_scores.py IN.json OUT.json`.

IN.json: {"corpora": [{"hyps": [...], "refs": [...]}, ...], "lines": [...]}.
OUT.json: {"version": "2.x", "corpora": [{"bleu", "chrf", "counts", "totals", "sys_len", "ref_len"}],
"tokens": [Tokenizer13a()(line) for each line]}. BLEU and chrF with sacrebleu's defaults (one
reference). Without the `sacrebleu` package it prints SKIPPED and exits 77.
"""
import json
import sys


def main():
    try:
        import sacrebleu
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    except ImportError as e:
        print(f"SKIPPED: Python {sys.executable} has no sacrebleu ({e}); `pip install sacrebleu`")
        return 77
    with open(sys.argv[1], encoding="utf-8") as f:
        data = json.load(f)
    out = {"version": sacrebleu.__version__, "corpora": []}
    for c in data["corpora"]:
        b = sacrebleu.corpus_bleu(c["hyps"], [c["refs"]])
        ch = sacrebleu.corpus_chrf(c["hyps"], [c["refs"]])
        out["corpora"].append({"bleu": b.score, "chrf": ch.score, "counts": list(b.counts), "totals": list(b.totals),
                               "sys_len": b.sys_len, "ref_len": b.ref_len})
    tok = Tokenizer13a()
    out["tokens"] = [tok(line) for line in data["lines"]]
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
