# Shared by the experiments' run.sh scripts (bash only): `source lib.sh "$@"` checks the script's
# one argument, OUT_DIR, and sets OUT to it and TINY (default 0; 1: a few steps, for CI).
#   MEGAGRAD  the megagrad program (default: build/megagrad of this checkout)
#   THREADS   --threads of every run (default 1)
#   JOBS      runs at once (default 2: one per core)
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
OUT=$1
TINY="${TINY:-0}"
EXPERIMENTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$EXPERIMENTS_DIR/.." && pwd)"
MEGAGRAD="${MEGAGRAD:-$REPO_DIR/build/megagrad}"
THREADS="${THREADS:-1}"
JOBS="${JOBS:-2}"
[ -x "$MEGAGRAD" ] || { echo "experiments: $MEGAGRAD not found: build it first (README: Training), or set MEGAGRAD" >&2; exit 2; }

# run_one DIR LABEL TEST(0|1) ARGS...: megagrad train --task ... ARGS --out DIR into a fresh DIR,
# with the configuration (config.json), the label, the thread count, stdout (train.log) and the
# peak resident memory in KiB (peak_rss_kib, by /usr/bin/time where present) next to
# metrics.jsonl; TEST=1 then evaluates the final checkpoint on the test split (test.txt).
run_one() {
  local dir=$1 label=$2 test=$3
  shift 3
  if [ -e "$dir/metrics.jsonl" ]; then
    echo "experiments: $dir already holds a run: give run.sh a fresh OUT_DIR" >&2
    return 2
  fi
  mkdir -p "$dir"
  echo "$label" > "$dir/label"
  echo "$THREADS" > "$dir/threads"
  "$MEGAGRAD" train "$@" --show-config > "$dir/config.json"
  local t0=$SECONDS
  # The run's peak resident memory (KiB) into peak_rss_kib, where GNU time is there.
  local timer=()
  [ -x /usr/bin/time ] && timer=(/usr/bin/time -f "%M" -o "$dir/peak_rss_kib")
  if ! "${timer[@]}" "$MEGAGRAD" train "$@" --threads "$THREADS" --out "$dir" > "$dir/train.log" 2>&1; then
    echo "experiments: run $label failed (see $dir/train.log)" >&2
    tail -5 "$dir/train.log" >&2
    return 1
  fi
  if [ "$test" = 1 ]; then
    "$MEGAGRAD" eval "$dir/checkpoint.safetensors" --split test --threads "$THREADS" > "$dir/test.txt" 2>&1 || {
      echo "experiments: eval of $label failed (see $dir/test.txt)" >&2; return 1; }
  fi
  echo "experiments: $label done in $((SECONDS - t0)) s: $(grep -E '^validation' "$dir/train.log")$( [ "$test" = 1 ] && echo "; $(grep -E '^test' "$dir/test.txt")")"
}

# Runs the queued commands (one line each, a run_one call) JOBS at a time; fails if any failed.
run_queue() {
  local failed=0 pids=() cmd
  while IFS= read -r cmd; do
    [ -n "$cmd" ] || continue
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || failed=1; done
    eval "$cmd" &
  done
  while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
  wait || failed=1
  return $failed
}
