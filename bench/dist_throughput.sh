#!/usr/bin/env bash
# Training throughput of data parallelism on this machine: `megagrad train` in three ways, on the
# main job's model (ListOps defaults) and on a larger one, in the order
#   1 process x 1 thread, 1 process x 2 threads, mpirun -np 2 x 1 thread, then the reverse,
# so that a drift in the machine's load hits all three alike. Prints tokens/s of each (median
# over the rounds) and the ratios to 1 process x 1 thread. The training loop's own figure
# ("steps N in S s: T tokens/s") is used: data generation and start-up are not in it.
#
#   bash bench/dist_throughput.sh [BUILD_DIR] [STEPS] [ROUNDS]   (default: build, 60 steps, 1 round)
#
# The larger model runs STEPS/6 steps (at least 5): one of its steps costs ~70 of the main job's.
#
# Needs a build with MPI (megagrad info: "MPI yes") and mpirun. Speed is a result to read, never
# an assertion.
set -euo pipefail
BUILD=${1:-build} STEPS=${2:-60} ROUNDS=${3:-1}
EXE=$(realpath "$BUILD/megagrad")
command -v mpirun > /dev/null || { echo "dist_throughput: mpirun not found (Debian: openmpi-bin)" >&2; exit 2; }
"$EXE" info | grep -qE "^mpi +built: yes" || { echo "dist_throughput: $EXE is built without MPI" >&2; "$EXE" info | grep -i mpi >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The larger model: 4 layers, D 128, H 256, batch 64, ListOps 'medium' lengths.
cat > "$tmp/large.json" <<'EOF'
{"model": {"layers": 4, "embed_dim": 128, "hidden_dim": 256, "ffn_hidden_dim": 256, "z_dim": 64},
 "data": {"preset": "medium"}, "train": {"batch_size": 64}}
EOF
echo "{}" > "$tmp/main.json"
"$EXE" info | grep -E "^(openblas core|mpi) "

run() {  # label model way -> tokens/s
  local out="$tmp/run-$1-$2-$3" cmd=()
  case $3 in
    1x1) cmd=("$EXE" train --threads 1) ;;
    1x2) cmd=("$EXE" train --threads 2) ;;
    2x1) cmd=(mpirun -np 2 --bind-to none "$EXE" train --threads 1) ;;
  esac
  local steps=$STEPS
  [ "$2" = large ] && steps=$(( STEPS / 6 > 5 ? STEPS / 6 : 5 ))
  "${cmd[@]}" --task listops --config "$tmp/$2.json" --steps "$steps" --out "$out" \
    > "$out.log" 2>&1 || { cat "$out.log" >&2; exit 1; }
  sed -n 's/^steps [0-9]* in [0-9.]* s: \([0-9.]*\) tokens\/s.*/\1/p' "$out.log" | tail -1
}

declare -A tps
for model in main large; do
  for r in $(seq 1 "$ROUNDS"); do
    for way in 1x1 1x2 2x1 2x1 1x2 1x1; do
      tps[$model-$way]+="$(run "$r-$RANDOM" $model $way) "
    done
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
printf "\n%-6s %-28s %12s %8s\n" model way tokens/s ratio
for model in main large; do
  base=$(echo "${tps[$model-1x1]}" | median)
  for way in 1x1 1x2 2x1; do
    m=$(echo "${tps[$model-$way]}" | median)
    case $way in 1x1) what="1 process, 1 thread" ;; 1x2) what="1 process, 2 threads" ;; 2x1) what="mpirun -np 2, 1 thread each" ;; esac
    printf "%-6s %-28s %12.0f %8.2f   (runs: %s)\n" $model "$what" "$m" "$(awk -v m="$m" -v b="$base" 'BEGIN {print m / b}')" "${tps[$model-$way]}"
  done
done
