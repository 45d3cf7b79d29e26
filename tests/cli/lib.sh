# Shared by the end-to-end CLI tests: `source "$(dirname "$0")/lib.sh" path/to/megagrad` sets BIN
# (the program), makes and enters a scratch folder W (removed at exit), defines fail, and writes
# tiny.json: a ListOps run small enough for a test (4 steps of batch 8; EVAL_EVERY, set before
# sourcing, says when it evaluates, default at the end).
BIN=$(realpath "$1")
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
fail() { echo "FAILED: $*"; exit 1; }
cat > tiny.json <<JSON
{"model": {"layers": 1, "embed_dim": 16, "hidden_dim": 32, "ffn_hidden_dim": 32, "z_dim": 8, "n_dim": 4,
           "classifier_dim": 16},
 "data": {"num_train": 64, "max_len": 40},
 "train": {"steps": 4, "batch_size": 8, "warmup": 1, "log_every": 2, "eval_every": ${EVAL_EVERY:-4}, "eval_batches": 2,
           "checkpoint_every": 2}}
JSON
