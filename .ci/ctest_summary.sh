#!/usr/bin/env bash
# ctest's own "100% tests passed" counts skipped tests (SKIP_RETURN_CODE) as passed. This prints
# a plain count instead, on a line of its own: "N passed, N failed, N skipped".
#
#   ctest_summary.sh run BUILD_DIR [ctest options...]
#       Runs ctest in BUILD_DIR (its output as usual), then prints the counts of this run and
#       exits with ctest's status (a failed test still fails the caller). With
#       MEGAGRAD_CTEST_TOTALS=FILE set, also appends the counts to FILE.
#   ctest_summary.sh total FILE
#       Prints the sum of the counts appended to FILE (0 runs: "0 passed, 0 failed, 0 skipped").
#
# The counts come from ctest's per-test result lines ("  3/310 Test  #3: name ....   Passed"):
# Passed is passed; ***Skipped and Not Run (Disabled) are skipped; anything else (***Failed,
# ***Timeout, ***Exception, ***Not Run) is failed.
set -uo pipefail

count() {  # ctest's output on stdin -> "passed failed skipped"
  awk '
    /^ *[0-9]+\/[0-9]+ +Test +#[0-9]+: / {
      if ($0 ~ /\*\*\*Skipped/ || $0 ~ /Not Run \(Disabled\)/) s++
      else if ($0 ~ /\*\*\*/) f++
      else if ($0 ~ / +Passed +[0-9.]+ sec/) p++
      else f++
    }
    END { printf "%d %d %d\n", p, f, s }'
}

case "${1:-}" in
  run)
    [ $# -ge 2 ] || { echo "usage: $0 run BUILD_DIR [ctest options...]" >&2; exit 2; }
    dir=$2
    shift 2
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    (cd "$dir" && ctest "$@") 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    read -r p f s < <(count < "$log")
    if [ $((p + f + s)) -eq 0 ] && [ "$rc" -eq 0 ]; then
      echo "ctest_summary: no test ran in $dir" >&2  # an empty run proves nothing
      f=1 rc=1
    fi
    if [ -n "${MEGAGRAD_CTEST_TOTALS:-}" ]; then echo "$p $f $s" >> "$MEGAGRAD_CTEST_TOTALS"; fi
    echo "ctest in $dir:"
    echo "$p passed, $f failed, $s skipped"
    exit "$rc"
    ;;
  total)
    [ $# -eq 2 ] || { echo "usage: $0 total FILE" >&2; exit 2; }
    if [ -s "$2" ]; then
      awk '{ p += $1; f += $2; s += $3 } END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$2"
    else
      echo "0 passed, 0 failed, 0 skipped"
    fi
    ;;
  *)
    echo "usage: $0 run BUILD_DIR [ctest options...] | $0 total FILE" >&2
    exit 2
    ;;
esac
