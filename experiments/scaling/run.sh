#!/usr/bin/env bash
# Cost of one training step against the sequence length: Mega (full attention), Mega-chunk
# (chunk CHUNK) and the Transformer, the same width (D 64: the models of ../listops_medium/, with
# max_positions = L), batch 1, at L = 512 ... 16384, and on to 65536 for the models that still
# fit (BATCH sets another batch). Each point is `megagrad bench-step` (one warm-up step, then the
# median of ITERS steps of forward + backward + clipping + AdamW) in a process of its own, one at
# a time: its time per step and its peak resident memory (VmHWM).
#
#   experiments/scaling/run.sh OUT_DIR          # ~6 min on one core
#   TINY=1 experiments/scaling/run.sh OUT_DIR   # L = 64, 128: what CI runs
#   LENGTHS="512 1024" MODELS="mega_chunk mega_chunk256" ITERS=5 BATCH=32 ...
#     (mega_chunk: chunk CHUNK, default 128; mega_chunkN: chunk N)
#
# A model stops at the first length where
#   - the peak memory predicted from its measured points would pass MEM_LIMIT_GIB (16): the next
#     point is extrapolated with the slope of the last two points on log-log axes, never below the
#     model's own order (2 for full attention, 1 for chunks), from the last point; the run is not
#     started ("stopped: predicted X GiB > 16 GiB"). Each run also runs under an address-space limit
#     of MEM_LIMIT_GIB (prlimit --as), so that a wrong prediction ends in a clean allocation
#     failure, not in the machine's OOM killer; and a run is not started when the prediction
#     exceeds the memory the machine has available then (it is shared), or MEM_RUN_GIB (default:
#     MEM_LIMIT_GIB), a lower cap for a run on a shared machine ("not run: predicted X GiB, within
#     16 GiB but over this run's cap");
#   - a measured step took over TIME_LIMIT_S (60) s (that point is kept and shown), or the next is
#     predicted (the same extrapolation) to take over 2 x TIME_LIMIT_S (not started: a minute's
#     margin for a prediction that overshoots).
# Leaves OUT_DIR/<model>/L<L>/{config.json, bench.json, bench.txt}, OUT_DIR/results.json,
# OUT_DIR/table.md, OUT_DIR/time.svg and OUT_DIR/memory.svg.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../lib.sh" "$@"  # checks OUT_DIR: sets OUT, and TINY
LENGTHS="${LENGTHS:-512 1024 2048 4096 8192 16384 32768 65536}"
MODELS="${MODELS:-mega mega_chunk transformer}"
ITERS="${ITERS:-3}"
BATCH="${BATCH:-1}"
CHUNK="${CHUNK:-128}"
MEM_LIMIT_GIB="${MEM_LIMIT_GIB:-16}"
MEM_RUN_GIB="${MEM_RUN_GIB:-$MEM_LIMIT_GIB}"
TIME_LIMIT_S="${TIME_LIMIT_S:-60}"
if [ "$TINY" = 1 ]; then LENGTHS="64 128"; ITERS=1; CHUNK=32; fi
mkdir -p "$OUT"
[ ! -e "$OUT/results.json" ] || { echo "experiments: $OUT already holds results: give run.sh a fresh OUT_DIR" >&2; exit 2; }

config_for() {  # model L -> the run configuration
  local base=mega chunk=-1
  case $1 in
    mega) ;;
    mega_chunk) chunk=$CHUNK ;;
    mega_chunk[0-9]*) chunk=${1#mega_chunk} ;;
    transformer) base=transformer ;;
    *) echo "experiments: unknown model $1 (mega, mega_chunk, mega_chunkN, transformer)" >&2; exit 2 ;;
  esac
  python3 - "$HERE/../listops_medium/$base.json" "$2" "$chunk" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["model"]["max_positions"] = max(int(sys.argv[2]), 512)
if cfg["model"]["type"] == "mega":
    cfg["model"]["chunk_size"] = int(sys.argv[3])
cfg.pop("data", None)  # bench-step makes its own sequences of exactly L tokens
print(json.dumps(cfg, indent=1))
PY
}

# predict MODEL L KIND: the value of KIND (peak_rss_mib or step_ms) of MODEL at length L,
# extrapolated from its measured points (summarize_scaling.py's predict); "" with no point yet.
predict() { python3 "$HERE/summarize_scaling.py" --predict "$1" "$2" "$3" "$OUT"; }

mem_limit_kib=$((MEM_LIMIT_GIB * 1024 * 1024))
for model in $MODELS; do
  stop=""
  for L in $LENGTHS; do
    dir="$OUT/$model/L$L"
    if [ -n "$stop" ]; then
      mkdir -p "$dir" && echo "$stop" > "$dir/skipped"
      continue
    fi
    mem=$(predict "$model" "$L" peak_rss_mib)
    ms=$(predict "$model" "$L" step_ms)
    avail_mib=$(awk '/MemAvailable/ {print int($2 / 1024)}' /proc/meminfo)
    why=""
    if [ -n "$mem" ]; then
      if awk -v m="$mem" -v g="$MEM_LIMIT_GIB" 'BEGIN {exit !(m > g * 1024)}'; then
        why=$(awk -v m="$mem" -v g="$MEM_LIMIT_GIB" 'BEGIN {printf "stopped: predicted %.1f GiB > %d GiB", m / 1024, g}')
      elif awk -v m="$mem" -v c="$MEM_RUN_GIB" 'BEGIN {exit !(m > c * 1024)}'; then
        why=$(awk -v m="$mem" -v c="$MEM_RUN_GIB" -v g="$MEM_LIMIT_GIB" 'BEGIN {printf "not run: predicted %.1f GiB, within %d GiB but over this run'"'"'s cap of %d GiB (MEM_RUN_GIB: a shared machine)", m / 1024, g, c}')
      elif awk -v m="$mem" -v a="$avail_mib" 'BEGIN {exit !(m > a - 2048)}'; then
        why=$(awk -v m="$mem" -v a="$avail_mib" 'BEGIN {printf "not run: predicted %.1f GiB, the shared machine had %.1f GiB available (2 GiB kept free)", m / 1024, a / 1024}')
      elif awk -v t="$ms" -v s="$TIME_LIMIT_S" 'BEGIN {exit !(t > 2000 * s)}'; then
        why=$(awk -v t="$ms" -v s="$TIME_LIMIT_S" 'BEGIN {printf "stopped: predicted %.0f s per step > %d s", t / 1000, s}')
      fi
    fi
    if [ -n "$why" ]; then
      echo "experiments: $model L=$L $why"
      stop="$why (at a shorter length)"
      mkdir -p "$dir" && echo "$why" > "$dir/skipped"
      continue
    fi
    iters=$ITERS
    # A step predicted over 20 s: one timed step after the warm-up (the two agree within noise).
    [ -n "$ms" ] && awk -v t="$ms" 'BEGIN {exit !(t > 20000)}' && iters=1
    mkdir -p "$dir"
    config_for "$model" "$L" > "$dir/config.json"
    echo "$THREADS" > "$dir/threads"
    { [ -n "$mem" ] && echo "predicted peak_rss_mib $mem step_ms $ms"; } > "$dir/predicted" || true
    cat /proc/loadavg > "$dir/loadavg_before"
    t0=$SECONDS
    if ! prlimit --as=$((mem_limit_kib * 1024)) -- "$MEGAGRAD" bench-step --config "$dir/config.json" --seq-len "$L" \
        --iters "$iters" --batch-size "$BATCH" --threads "$THREADS" --json "$dir/bench.json" > "$dir/bench.txt" 2>&1; then
      tail -3 "$dir/bench.txt" >&2
      why="failed: $(tail -1 "$dir/bench.txt")"
      echo "$why" > "$dir/failed"
      rm -f "$dir/bench.json"
      stop="$why (at a shorter length)"
      echo "experiments: $model L=$L $why"
      continue
    fi
    cat /proc/loadavg > "$dir/loadavg_after"
    echo "experiments: $model L=$L done in $((SECONDS - t0)) s: $(grep -E '^step ms' "$dir/bench.txt"); $(grep -E '^peak RSS' "$dir/bench.txt" | cut -d'(' -f1)"
    if awk -v t="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["step_ms"])' "$dir/bench.json")" \
        -v s="$TIME_LIMIT_S" 'BEGIN {exit !(t > 1000 * s)}'; then
      stop="stopped: a step at a shorter length took over $TIME_LIMIT_S s"
    fi
  done
done

python3 "$HERE/summarize_scaling.py" --out "$OUT/results.json" --table "$OUT/table.md" --plot-time "$OUT/time.svg" \
  --plot-memory "$OUT/memory.svg" --mem-limit-gib "$MEM_LIMIT_GIB" --time-limit-s "$TIME_LIMIT_S" \
  --note "one training step (forward, backward, gradient clipping, AdamW) at batch $BATCH per point, one process per point, one at a time; time: the median of the timed steps after one warm-up step; memory: the process's peak resident set (VmHWM), which includes the model, the optimizer state, the activations kept for the backward pass, megagrad's CPU block cache (freed blocks kept for reuse, at most 2 GiB) and OpenBLAS's buffers" \
  --note "load_before / load_after: the machine's 1-minute load average (/proc/loadavg) when each point started and ended; on a shared machine the times are inflated by other work" \
  "$OUT"
