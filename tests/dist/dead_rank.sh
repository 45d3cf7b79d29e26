#!/usr/bin/env bash
# A rank that fails alone must end the whole mpirun job, not leave the others waiting in a
# collective (ctest: mpi_dead_rank_ends_job). Two ranks of `megagrad train` (MPMD launch): rank 1
# gets a data folder that does not exist and fails while loading, before the ranks' first
# collective; rank 0 goes on and would wait for it forever. Passes when mpirun exits non-zero
# within the time limit and the output holds rank 1's error.
#   bash tests/dist/dead_rank.sh build/megagrad
set -uo pipefail
exe=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
common=(train --task listops --steps 5 --batch-size 4 --threads 1)
start=$SECONDS
timeout 100 mpirun -np 1 "$exe" "${common[@]}" --out "$tmp/run" : \
                   -np 1 "$exe" "${common[@]}" --out "$tmp/run" --data "$tmp/no-such-folder" > "$tmp/out" 2>&1
rc=$?
cat "$tmp/out"
echo "dead rank: mpirun exited with $rc after $((SECONDS - start)) s"
[ $rc -ne 124 ] || { echo "dead rank: FAILED: the job hung (killed by timeout)"; exit 1; }
[ $rc -ne 0 ] || { echo "dead rank: FAILED: mpirun exited 0"; exit 1; }
grep -q "no-such-folder" "$tmp/out" || { echo "dead rank: FAILED: rank 1's error is not in the output"; exit 1; }
echo "dead rank: passed"
