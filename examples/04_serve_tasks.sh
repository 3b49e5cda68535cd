#!/usr/bin/env bash
# Serve several tasks from one sealed backbone: every TASK.adapter in a folder is a task named TASK.
#
#   examples/04_serve_tasks.sh runs/examples/tiny_pair.seal runs/examples/keys/seal.key
#
# Uses the adapters examples 02 and 03 wrote (colours, reviews). Adapter files added to, changed
# in or removed from the folder are picked up while serving. PORT=0 picks a free port (printed).
# Then try examples/05_http_client.py --url http://127.0.0.1:8080. Needs: pip install 'sealkit[serve]'.
set -euo pipefail
SEAL=$1
KEY=$2
OUT=${OUT:-runs/examples}
mkdir -p "$OUT/adapters"
cp "$OUT/colours.adapter" "$OUT/reviews.adapter" "$OUT/adapters/"
exec sealkit serve "$SEAL" --key "$KEY" --adapters "$OUT/adapters" --port "${PORT:-8080}" --log-level warning
