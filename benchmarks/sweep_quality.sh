#!/usr/bin/env bash
# The hyperparameter variations tried for dga and lga (docs/results.md, "What we tried").
# Every choice is made on the validation split; each JSON also holds the test metrics of that run.
# The JSONs in benchmarks/results/sweep/ came from the previous single-seed quality.py (commit 7f29f91);
# rerun (FORCE=1) they go through the current one: mnist and rt-sentiment, seed 0, the fitted output stage.
set -euo pipefail
cd "$(dirname "$0")/.."
# A run whose JSON already exists is skipped (delete it, or set FORCE=1, to run it again).
run() {
  name=$1; shift
  out="benchmarks/results/sweep/$name.json"
  if [[ -f "$out" && -z "${FORCE:-}" ]]; then echo "skip $name (exists)"; return; fi
  .venv/bin/python benchmarks/quality.py --quiet --methods dga,lga --steps 150 --seeds 0 --out "$out" "$@"
}
run sentiment-lr5e-4   --tasks rt-sentiment --lr 5e-4
run sentiment-lr1e-2   --tasks rt-sentiment --lr 1e-2
run sentiment-prompts4 --tasks rt-sentiment --text-prompts 4
run sentiment-400steps --tasks rt-sentiment --steps 400
run mnist-lr1e-2       --tasks mnist --lr 1e-2
run mnist-width64      --tasks mnist --image-width 64
run mnist-400steps     --tasks mnist --steps 400
