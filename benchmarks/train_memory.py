"""Peak memory of training: dga and lga through a seal against LoRA and full fine-tuning (see docs/benchmarks.md).

Every configuration runs in a fresh subprocess (benchmarks/train_steps.py builds its step): it
imports what it needs, records its RSS (the baseline), builds the method (opens the seal or loads the
torch model), runs `--steps` training steps on the same synthetic batch size, and reports the peak RSS
(VmHWM) of the whole process. "Peak over baseline" is what training itself adds.

Usage:
  .venv/bin/python benchmarks/train_memory.py --recipe efficientnet --batch 8 --steps 4 \
      --seal-dir /tmp/speedseals --json benchmarks/results/train_memory.json
The seal (light, with residual graphs, so one seal serves dga, lga and the recompute mode) is
exported into --seal-dir, or reused from there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from seal_speed import EXPORT, RECIPES, gc_collect, hwm_bytes, rss_bytes  # noqa: E402

CONFIGS = ("dga-seal", "dga-seal-shared", "lga-seal", "lga-seal-shared", "dga-seal-recompute", "dga-torch", "lora", "full")
# "-shared": the seal opened with weights="shared" (the others: open_seal's default, "auto").
# Any seal configuration may end in "-chunk-N" (open_seal's training_chunk, default 0 = auto), after
# "-arena-on" or "-arena-off" (open_seal's training_arena, default "auto").
ARENA_SUFFIXES = {"-arena-on": "on", "-arena-off": "off"}


def parse_config(name: str) -> tuple[str, str, str, int]:
    """'dga-seal-shared-arena-on-chunk-2' -> ('dga-seal', 'shared', 'on', 2): the method, weights mode, training arena and chunk."""
    chunk = 0
    head, sep, rows = name.rpartition("-chunk-")
    if sep and rows.isdigit():
        name, chunk = head, int(rows)
    arena = "auto"
    for suffix, mode in ARENA_SUFFIXES.items():
        if name.endswith(suffix):
            name, arena = name.removesuffix(suffix), mode
    weights = "shared" if name.endswith("-shared") else "auto"
    return name.removesuffix("-shared"), weights, arena, chunk


def seal_path(recipe: str, seal_dir: Path) -> Path:
    options = RECIPES[recipe][1]
    return seal_dir / (f"{recipe}" + "".join(f"-{k}{v}" for k, v in options.items()) + "-light-residuals.seal")


def ensure_light_seal(recipe: str, seal_dir: Path, key: bytes) -> Path:
    from sealkit.compile.export import export_seal
    from sealkit.compile.recipe import load_recipe

    path = seal_path(recipe, seal_dir)
    if not path.exists():
        file, options = RECIPES[recipe]
        export_seal(load_recipe(EXPORT / file, **options), path, key=key, exposure="light", residuals=True)
    return path


def worker(cfg: dict) -> dict:
    import torch
    import torch._dynamo  # noqa: F401  (AdamW imports it on first use: import memory, not training memory)
    from train_steps import make_step

    from sealkit.compile.recipe import load_recipe
    from sealkit.runtime.seal import open_seal
    from sealkit.seal.crypto import read_key

    torch.set_num_threads(cfg["threads"])
    gc_collect()
    out = {"config": cfg["method"], "baseline": rss_bytes()}
    method, weights, arena, chunk = parse_config(cfg["method"])
    seal = open_seal(cfg["seal"], key=read_key(cfg["key"]), threads=cfg["threads"], weights=weights, training_arena=arena, training_chunk=chunk)
    file, options = RECIPES[cfg["recipe"]]
    # the seal methods never touch the torch model; only the white-box ones load it
    recipe = load_recipe(EXPORT / file, **options) if method in ("dga-torch", "lora", "full") else None
    step = make_step(method, seal, recipe, cfg["batch"])
    gc_collect()
    out["built"] = rss_bytes()
    started = time.perf_counter()
    losses = [step() for _ in range(cfg["steps"])]
    out["seconds_per_step"] = (time.perf_counter() - started) / cfg["steps"]
    out["peak"] = hwm_bytes()
    out["losses"] = losses
    return out


def run_worker(cfg: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(cfg)], capture_output=True, text=True, env=env, cwd=str(ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"worker {cfg['method']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(report: dict) -> str:
    cfg = report["config"]
    lines = [
        f"{cfg['recipe']}, batch {cfg['batch']}, {cfg['steps']} steps, {cfg['threads']} threads; MiB of RSS, a fresh process per row",
        "",
        "| method | baseline (imports) | after building | peak | peak over baseline | vs full fine-tuning | s/step |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = report["runs"]
    full = rows.get("full")
    for name, r in rows.items():
        over = r["peak"] - r["baseline"]
        ratio = f"{over / (full['peak'] - full['baseline']):.2f}x" if full else "–"
        lines.append(
            f"| {name} | {r['baseline'] / 2**20:.0f} | {r['built'] / 2**20:.0f} | {r['peak'] / 2**20:.0f} | {over / 2**20:.0f} | {ratio} | {r['seconds_per_step']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="efficientnet", choices=sorted(RECIPES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--seal-dir", type=Path, required=False)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    from sealkit.seal.crypto import read_key, write_keys

    seal_dir = args.seal_dir or Path("/tmp/sealkit-train-memory")
    seal_dir.mkdir(parents=True, exist_ok=True)
    if not (seal_dir / "seal.key").exists():
        write_keys(seal_dir)
    key_path = seal_dir / "seal.key"
    seal = ensure_light_seal(args.recipe, seal_dir, read_key(key_path))
    report = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "worker"}, "loadavg_start": os.getloadavg(), "runs": {}}
    if args.json and args.json.exists():  # resumable: finished configurations are kept
        previous = json.loads(args.json.read_text())
        if previous.get("config", {}).get("batch") == args.batch and previous.get("config", {}).get("recipe") == args.recipe:
            report["runs"] = previous.get("runs", {})
    for method in args.configs.split(","):
        if method in report["runs"]:
            continue
        cfg = {"method": method, "recipe": args.recipe, "seal": str(seal), "key": str(key_path), "batch": args.batch, "steps": args.steps, "threads": args.threads}
        report["runs"][method] = run_worker(cfg)
        r = report["runs"][method]
        print(f"{method}: peak {r['peak'] / 2**20:.0f} MiB, {(r['peak'] - r['baseline']) / 2**20:.0f} MiB over baseline, {r['seconds_per_step']:.2f} s/step", file=sys.stderr, flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
    report["loadavg_end"] = os.getloadavg()
    report["markdown"] = markdown(report)
    print(report["markdown"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
