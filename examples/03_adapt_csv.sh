#!/usr/bin/env bash
# Device side, command line only: adapt a text seal on a CSV, evaluate, predict.
#
#   examples/03_adapt_csv.sh runs/examples/tiny_pair.seal runs/examples/keys/seal.key [STEPS]
#
# The CSV's columns are named `text` and `label`, so no --text-col/--label-col is needed (sealkit
# says which columns it picked). Needs: pip install 'sealkit[adapt]' (eval and predict need no torch).
set -euo pipefail
SEAL=$1
KEY=$2
STEPS=${3:-40}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-runs/examples}
mkdir -p "$OUT"

# Train: dga adapts the token embeddings going in and the embedding coming out; 80/20 seeded split.
sealkit adapt "$SEAL" --key "$KEY" --train "$HERE/data/reviews.csv" --method dga --task classify \
    --steps "$STEPS" --batch 8 --lr 0.01 --out "$OUT/reviews.adapter"

# Evaluate on the torch-free runtime; --json prints the metrics as JSON on stdout.
sealkit eval "$SEAL" --key "$KEY" --adapter "$OUT/reviews.adapter" --data "$HERE/data/reviews.csv" --json

# Predict: texts on the command line (or a .txt file, one text per line).
sealkit predict "$SEAL" --key "$KEY" --adapter "$OUT/reviews.adapter" "a great fun film" "an awful boring plot" --top-k 2
