#!/usr/bin/env bash
# The GPU check, in one command (must finish within 8 minutes on one H200): builds with CUDA for
# the local GPU, runs the CUDA tests, the NCCL communicator under mpirun, then the GPU benchmarks: kernels vs copy bandwidth
# (bench_gpu), an encoder layer's forward+backward for configs A-D, and ListOps training steps.
# Usage: bash bench/gpu_check.sh [build-dir]     (default build-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-gpu}
JOBS=$(nproc)
t0=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - t0 )) s)"; }

step "configure + build ($JOBS jobs, sm_90)"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DMEGAGRAD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 > "$BUILD.configure.log" 2>&1 \
  || { cat "$BUILD.configure.log"; exit 1; }
cmake --build "$BUILD" -j "$JOBS" --target megagrad megagrad_tests bench_gpu 2>&1 | grep -E "error|warning: .*spill|^\[100%\]" || true
test -x "$BUILD/megagrad_tests"

step "CUDA tests"
status=0
"$BUILD/megagrad_tests" "[cuda]" || status=$?
"$BUILD/megagrad" info | grep -iE "cuda|device|nccl" || true

step "NCCL: the [nccl] tests as 1 rank under mpirun; 2 ranks (on 1 GPU: both must refuse to share it)"
info=$("$BUILD/megagrad" info)  # not piped into grep -q: under pipefail, an early exit of grep fails the pipe
if grep -qE "^nccl +built: yes" <<< "$info"; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  timeout 120 mpirun -np 1 "$BUILD/megagrad_tests" "[nccl]" || status=$?
  { cmake --build "$BUILD" -j "$JOBS" --target megagrad_nccl_check > /dev/null \
      && timeout 120 mpirun -np 2 --oversubscribe "$BUILD/megagrad_nccl_check"; } || status=$?
else
  grep -E "^nccl" <<< "$info" || echo "nccl: not in megagrad info"
fi

step "GPU benchmarks (bench_gpu)"
timeout 180 "$BUILD/bench_gpu" || status=$?

step "encoder layer forward+backward, configs A-D (cuda, float32)"
for c in A B C D; do
  timeout 60 "$BUILD/megagrad" bench-layer --config "bench/configs/$c.json" --device cuda --iters 5 \
    | grep -E "^bench-layer|forward|peak" || status=$?
done

step "ListOps training steps on the GPU (100 steps, 'short' preset)"
timeout 120 "$BUILD/megagrad" train --task listops --device cuda --steps 100 --out "$BUILD/runs/listops-gpu" --force \
  2>&1 | tail -n 4 || status=$?

step "done (exit $status)"
exit $status
