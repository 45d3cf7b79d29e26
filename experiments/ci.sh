#!/usr/bin/env bash
# CI: every experiment's run.sh in TINY mode (a few steps per run), so that the scripts cannot rot.
# Needs ./build/megagrad (make test builds it). Checks that each leaves results.json and its plot;
# never checks speed or accuracy (those are results, not assertions).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
for script in $(find experiments -name run.sh | sort); do
  out="$tmp/$(dirname "${script#experiments/}" | tr / _)"
  t0=$SECONDS
  TINY=1 bash "$script" "$out" > "$out.log" 2>&1 || { cat "$out.log"; echo "experiments/ci.sh: $script failed"; exit 1; }
  # The plots: those results.json names under "plots", else the validation accuracy plot.
  plots=$( [ -s "$out/results.json" ] && python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1])).get("plots", ["val_accuracy.svg"])))' "$out/results.json")
  for f in results.json table.md $plots; do
    [ -s "$out/$f" ] || { cat "$out.log"; echo "experiments/ci.sh: $script left no $f"; exit 1; }
  done
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["runs"] and all(x["steps"] > 0 for x in r["runs"]), "no steps"' \
    "$out/results.json" || { echo "experiments/ci.sh: $script: bad results.json"; exit 1; }
  echo "experiments/ci.sh: $script (TINY) ok in $((SECONDS - t0)) s"
  n=$((n + 1))
done
echo "experiments/ci.sh: $n experiment script(s) ok"
