"""Seal speed and memory vs torch eager, for the real recipes (see docs/benchmarks.md).

For every tower of every recipe, at one batch size, side by side in one process:
  1. forward: seal `Tower.forward` vs torch eager `module(*inputs)` under no_grad (module.eval());
  2. VJP:     seal `Tower.vjp` vs torch autograd forward + backward w.r.t. the input only
              (parameters frozen: requires_grad False);
  3. training step, everything `adapt` runs through the backbone for one batch, vs the same torch
     forward + backward: "step (recompute)" = `Tower.forward` + `Tower.vjp` (a plain seal),
     "step (residuals)" = `Tower.forward_for_backward` + `Tower.backward` (a seal exported with
     --residuals: one forward per step);
for both weight modes of `open_seal` ("shared" and "copied"). Timings are medians over
`--repeats` rounds after warm-up; each round runs every configuration once, in a shuffled order,
so machine noise hits torch and the seal alike. Ratios (seal / torch) are the numbers to read.

  4. memory: for each weight mode (and torch, for reference), a fresh subprocess that imports only
     what it needs (the seal worker never imports torch) records RSS after import (baseline),
     after open_seal (decrypt), after the first forward and the first VJP (sessions created),
     and the peak RSS: while loading, and separately during steady-state forward and VJP calls
     (the high-water mark is reset through /proc/self/clear_refs before each phase).
     "Opened-seal memory" = RSS after sessions are created - baseline.

Threads: torch.set_num_threads(T) and open_seal(threads=T) with T = --threads (default 2).

Usage:
  .venv/bin/python benchmarks/seal_speed.py --recipes minilm,efficientnet --batch 8 \
      --json benchmarks/results/seal_speed.json
Seals (with residual graphs) are exported into a temporary folder, or into --seal-dir, where
existing seals (and the key file seal.key) are reused. `--e2e` adds end-to-end dga training steps/s
against a torch loop through the same frozen backbone into the same adapters (benchmarks/train_steps.py).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPORT = ROOT / "export"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # train_steps

# name -> (recipe file, options)
RECIPES = {
    "minilm": ("minilm.py", {}),
    "efficientnet": ("efficientnet_lite0.py", {"image_size": 224}),
    "pair": ("clip_pair.py", {}),
}
MODES = ("shared", "copied")
TARGETS = {"forward": 1.0, "vjp": 0.9, "step_recompute": 0.8, "step": 0.8, "step_whole": 0.8, "memory": 1.5}
# op -> (row label, the torch call it is compared with)
OPS = {
    "forward": ("forward", "forward"),
    "vjp": ("VJP (fwd+bwd)", "vjp"),
    "step_recompute": ("training step, recompute (forward + VJP)", "vjp"),
    "step": ("training step, residuals (forward_for_backward + backward)", "vjp"),
    # the same with the whole batch in one run of each graph, as before the tower's training chunk (runtime/seal.py)
    "step_whole": ("training step, residuals, whole batch per run", "vjp"),
}
MIN_QUIET = 5  # quiet rounds needed before the headline numbers use only quiet rounds


# --------------------------------------------------------------------------------------------
# helpers shared by the main process and the workers (stdlib + numpy only)
# --------------------------------------------------------------------------------------------
def rss_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def hwm_bytes() -> int:
    """Peak RSS since the process started or since the last reset_hwm()."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_hwm() -> bool:
    """Reset the peak-RSS mark (Linux >= 4.0). Returns False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def make_inputs(spec, batch: int, seq: int, seed: int = 0):
    """Numpy inputs and cotangent for a tower from its manifest spec (TowerSpec)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sizes = {"batch": batch, "sequence": seq}
    scale = 0.05 if spec.modality == "text" else 1.0  # token embeddings are small; pixels ~N(0, 1)
    inputs = {}
    for t in spec.inputs:
        shape = tuple(sizes[d] if isinstance(d, str) else int(d) for d in t.shape)
        if np.dtype(t.dtype).kind == "f":
            inputs[t.name] = (scale * rng.standard_normal(shape)).astype(t.dtype)
        else:  # attention masks: every token real
            inputs[t.name] = np.ones(shape, dtype=t.dtype)
    out_shape = tuple(sizes[d] if isinstance(d, str) else int(d) for d in spec.output.shape)
    cotangent = rng.standard_normal(out_shape).astype(spec.output.dtype)
    return inputs, cotangent


def gc_collect() -> None:
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# --------------------------------------------------------------------------------------------
# memory workers (run in a fresh subprocess each)
# --------------------------------------------------------------------------------------------
def memory_worker_seal(cfg: dict) -> dict:
    import numpy as np  # noqa: F401
    import onnxruntime  # noqa: F401

    from sealkit.runtime.seal import open_seal
    from sealkit.seal.container import read_seal
    from sealkit.seal.crypto import read_key

    key = read_key(cfg["key"])
    manifest = read_seal(cfg["seal"]).manifest
    data = {name: make_inputs(spec, cfg["batch"], cfg["seq"]) for name, spec in manifest.towers.items()}
    assert "torch" not in sys.modules, "the seal memory worker must not import torch"
    gc_collect()
    out = {"baseline": rss_bytes()}
    seal = open_seal(cfg["seal"], key=key, weights=cfg["mode"], threads=cfg["threads"])
    gc_collect()
    out["opened"] = rss_bytes()
    out["weight_bytes"] = seal.weight_bytes
    # Create the forward and VJP sessions without running them (Tower._graph is what the first
    # call does), so session memory is told apart from onnxruntime's working memory for a batch.
    for name in data:
        seal.tower(name)._graph("forward")
        seal.tower(name)._graph("vjp")
    gc_collect()
    out["sessions"] = rss_bytes()
    for name, (inputs, _) in data.items():
        seal.tower(name).forward(inputs)
    gc_collect()
    out["first_forward"] = rss_bytes()
    for name, (inputs, cotangent) in data.items():
        seal.tower(name).vjp(inputs, cotangent)
    gc_collect()
    out["first_vjp"] = rss_bytes()
    out["peak_load"] = hwm_bytes()  # decrypt + session creation + first calls
    out["hwm_reset"] = reset_hwm()
    for _ in range(3):
        for name, (inputs, _) in data.items():
            seal.tower(name).forward(inputs)
    out["peak_forward"] = hwm_bytes()
    reset_hwm()
    for _ in range(3):
        for name, (inputs, cotangent) in data.items():
            seal.tower(name).vjp(inputs, cotangent)
    out["peak_vjp"] = hwm_bytes()
    out["peak_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["torch_imported"] = "torch" in sys.modules
    return out


def memory_worker_torch(cfg: dict) -> dict:
    import numpy as np  # noqa: F401
    import torch

    from sealkit.compile.recipe import load_recipe
    from sealkit.seal.container import read_seal

    torch.set_num_threads(cfg["threads"])
    manifest = read_seal(cfg["seal"]).manifest
    gc_collect()
    out = {"baseline": rss_bytes()}
    file, options = RECIPES[cfg["recipe"]]
    recipe = load_recipe(EXPORT / file, **options)
    towers = []
    for tower in recipe.towers:
        tower.module.eval()
        for p in tower.module.parameters():
            p.requires_grad_(False)
        tower.embed = None  # not used by forward/VJP (the seal does not load its embed graph either)
        inputs, cotangent = make_inputs(manifest.towers[tower.name], cfg["batch"], cfg["seq"])
        towers.append((tower, inputs, cotangent))
    del recipe
    gc_collect()
    out["opened"] = rss_bytes()
    out["weight_bytes"] = sum(4 * p.numel() for t, _, _ in towers for p in t.module.parameters())
    out["sessions"] = out["opened"]  # torch has nothing to build before the first call
    for tower, inputs, _ in towers:
        with torch.no_grad():
            tower.module(*[torch.from_numpy(inputs[s.name]) for s in tower.inputs])
    gc_collect()
    out["first_forward"] = rss_bytes()
    for tower, inputs, cotangent in towers:
        _torch_vjp(torch, tower, inputs, torch.from_numpy(cotangent))
    gc_collect()
    out["first_vjp"] = rss_bytes()
    out["peak_load"] = hwm_bytes()
    out["hwm_reset"] = reset_hwm()
    for _ in range(3):
        for tower, inputs, _ in towers:
            with torch.no_grad():
                tower.module(*[torch.from_numpy(inputs[s.name]) for s in tower.inputs])
    out["peak_forward"] = hwm_bytes()
    reset_hwm()
    for _ in range(3):
        for tower, inputs, cotangent in towers:
            _torch_vjp(torch, tower, inputs, torch.from_numpy(cotangent))
    out["peak_vjp"] = hwm_bytes()
    out["peak_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def run_memory_worker(cfg: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]))
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--memory-worker", json.dumps(cfg)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker {cfg['mode']} for {cfg['recipe']} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# speed (main process)
# --------------------------------------------------------------------------------------------
def _torch_vjp(torch, tower, inputs: dict, cotangent):
    """Forward + backward w.r.t. the differentiable inputs only (parameters are frozen)."""
    args, wrt = [], []
    for s in tower.inputs:
        t = torch.from_numpy(inputs[s.name])
        if s.differentiable:
            t = t.clone().requires_grad_(True)
            wrt.append(t)
        args.append(t)
    out = tower.module(*args)
    grads = torch.autograd.grad(out, wrt, cotangent)
    return out.detach(), grads


CPUS = os.cpu_count() or 1
_TICK = os.sysconf("SC_CLK_TCK")


def _system_busy() -> float:
    """CPU-seconds all processes have been busy since boot (/proc/stat)."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICK


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU-seconds other processes used meanwhile) for one call."""
    busy0, own0 = _system_busy(), _own_cpu()
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    other = (_system_busy() - busy0) - (_own_cpu() - own0)
    return seconds, other


def ensure_seal(name: str, seal_dir: Path, key: bytes, log) -> Path:
    from sealkit.compile.export import export_seal
    from sealkit.compile.recipe import load_recipe

    file, options = RECIPES[name]
    suffix = "".join(f"-{k}{v}" for k, v in options.items())
    path = seal_dir / f"{name}{suffix}-dark-residuals.seal"
    if path.exists():
        from sealkit.errors import SealkitError
        from sealkit.runtime.seal import open_seal

        try:
            # a seal from an older sealkit, another key or without residual graphs is re-exported
            if all(t.has_residual_graphs for t in open_seal(path, key=key).towers.values()):
                log(f"{name}: reusing {path}")
                return path
        except SealkitError as exc:
            log(f"{name}: cannot reuse {path} ({exc}); exporting it again")
    log(f"{name}: exporting {path.name} ...")
    summary = export_seal(load_recipe(EXPORT / file, **options), path, key=key, exposure="dark", progress=lambda m: log(f"  {m}"), residuals=True)
    log(f"{name}: exported in {summary.seconds:.0f}s ({summary.seal_bytes / 1e6:.1f} MB)")
    return path


def graph_weight_bytes(seal, tower_name: str) -> int:
    """Bytes of the unique pooled weights that the tower's forward and VJP graphs refer to."""
    import onnx

    from sealkit.seal.obfuscate import external_weights

    seen = {}
    spec = seal.tower(tower_name).spec
    for graph in ("forward", "vjp"):
        model = onnx.ModelProto.FromString(seal.blob(spec.graphs[graph]))
        for w in external_weights(model):
            seen[w.name] = w.length
    return sum(seen.values())


def bench_recipe(name: str, seal_path: Path, key: bytes, args, log) -> list[dict]:
    import torch

    from sealkit.compile.check import relative_error
    from sealkit.compile.recipe import load_recipe
    from sealkit.runtime.seal import open_seal

    file, options = RECIPES[name]
    recipe = load_recipe(EXPORT / file, **options)
    seals = {mode: open_seal(seal_path, key=key, weights=mode, threads=args.threads) for mode in MODES}
    # the same seal opened again to run the whole batch per graph run: its own sessions, so the two chunkings' shapes do not alternate in one session
    whole_batch = {mode: open_seal(seal_path, key=key, weights=mode, threads=args.threads, training_chunk=args.batch) for mode in MODES}
    results = []
    for tower in recipe.towers:
        module = tower.module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        towers = {mode: seal.tower(tower.name) for mode, seal in seals.items()}
        spec = towers["shared"].spec
        inputs, cotangent = make_inputs(spec, args.batch, args.seq)
        torch_args = [torch.from_numpy(inputs[s.name]) for s in tower.inputs]
        torch_cot = torch.from_numpy(cotangent)

        def torch_forward():
            with torch.no_grad():
                return module(*torch_args)

        calls = {("forward", "torch"): torch_forward, ("vjp", "torch"): lambda: _torch_vjp(torch, tower, inputs, torch_cot)}
        for mode, t in towers.items():
            calls[("forward", mode)] = lambda t=t: t.forward(inputs)
            calls[("vjp", mode)] = lambda t=t: t.vjp(inputs, cotangent)
            calls[("step_recompute", mode)] = lambda t=t: (t.forward(inputs), t.vjp(inputs, cotangent))
            calls[("step", mode)] = lambda t=t: t.backward(t.forward_for_backward(inputs)[1], cotangent)
            w = whole_batch[mode].tower(tower.name)
            calls[("step_whole", mode)] = lambda w=w: w.backward(w.forward_for_backward(inputs)[1], cotangent)

        # correctness check (and first call: sessions are created here, outside the timings)
        ref_out = torch_forward().numpy()
        ref_vjp_out, ref_grads = calls[("vjp", "torch")]()
        diff_names = [s.name for s in tower.inputs if s.differentiable]
        check = {}
        for mode, t in towers.items():
            v = t.vjp(inputs, cotangent)
            saved_out, residuals = t.forward_for_backward(inputs)
            b = t.backward(residuals, cotangent)
            check[mode] = {
                "forward_rel_err": relative_error(t.forward(inputs), ref_out),
                "vjp_output_rel_err": relative_error(v.output, ref_vjp_out.numpy()),
                "vjp_grad_rel_err": max(relative_error(v.input_grads[n], g.numpy()) for n, g in zip(diff_names, ref_grads)),
                "forward_saved_rel_err": relative_error(saved_out, ref_out),
                "backward_grad_rel_err": max(relative_error(b.input_grads[n], g.numpy()) for n, g in zip(diff_names, ref_grads)),
                "residual_bytes": residuals.nbytes,
            }
        log(f"{name}/{tower.name}: agreement with torch {json.dumps(check)}")

        keys = list(calls)
        for _ in range(args.warmup):
            for k in keys:
                calls[k]()
        times = {k: [] for k in keys}
        loads: list[float] = []  # per round: how much other processes competed for the cores in use
        rng = random.Random(0)
        log(f"{name}/{tower.name}: timing >= {args.repeats} rounds of {len(keys)} calls (shuffled each round), until {args.repeats} quiet rounds, {args.max_rounds} rounds or {args.max_seconds:.0f}s")
        rounds, started = 0, time.perf_counter()
        while rounds < args.repeats or (
            sum(load <= args.quiet for load in loads) < args.repeats and rounds < args.max_rounds and time.perf_counter() - started < args.max_seconds
        ):
            rounds += 1
            rng.shuffle(keys)
            wall = other = 0.0
            for k in keys:
                if args.gap:
                    time.sleep(args.gap)  # let the other runtime's spinning worker threads go idle
                seconds, busy = _timed(calls[k])
                times[k].append(seconds)
                wall += seconds
                other += busy
            # other processes' CPU use beyond the cores this benchmark leaves free, per core it uses
            spare = max(0, CPUS - args.threads)
            loads.append(max(0.0, other - spare * wall) / (min(args.threads, CPUS) * wall))
        quiet = [i for i, load in enumerate(loads) if load <= args.quiet]

        def summary(samples):
            ms = [1e3 * s for s in samples]
            q = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0]] * 3
            out = {"median_ms": statistics.median(ms), "p25_ms": q[0], "p75_ms": q[2], "min_ms": min(ms), "samples_ms": ms}
            out["quiet_median_ms"] = statistics.median([ms[i] for i in quiet]) if quiet else None
            return out

        speed = {"rounds": rounds, "quiet_rounds": len(quiet), "contention_per_round": loads}
        for op, (_, torch_op) in OPS.items():
            row = {who: summary(times[(op, who)]) for who in MODES}
            row["torch"] = summary(times[(torch_op, "torch")])
            for mode in MODES:
                row[f"ratio_{mode}"] = row[mode]["median_ms"] / row["torch"]["median_ms"]
                # the median of per-round ratios: each seal call is paired with the torch call of its round
                row[f"paired_ratio_{mode}"] = statistics.median(a / b for a, b in zip(times[(op, mode)], times[(torch_op, "torch")]))
                row[f"paired_ratio_spread_{mode}"] = _spread([a / b for a, b in zip(times[(op, mode)], times[(torch_op, "torch")])])
                row[f"quiet_ratio_{mode}"] = row[mode]["quiet_median_ms"] / row["torch"]["quiet_median_ms"] if quiet else None
            # the headline: medians over quiet rounds when there are enough of them, else over all rounds
            basis = "quiet" if len(quiet) >= MIN_QUIET else "all"
            row["basis"] = basis
            row["headline_ms"] = {who: row[who]["quiet_median_ms" if basis == "quiet" else "median_ms"] for who in ("torch",) + MODES}
            for mode in MODES:
                row[f"headline_ratio_{mode}"] = row["headline_ms"][mode] / row["headline_ms"]["torch"]
            speed[op] = row
        log(f"{name}/{tower.name}: other processes took {statistics.median(loads):.0%} of the cores in use (median round); {len(quiet)} quiet rounds")

        results.append(
            {
                "recipe": name,
                "recipe_name": recipe.name,
                "tower": tower.name,
                "seal": str(seal_path),
                "inputs": {k: list(v.shape) for k, v in inputs.items()},
                "seal_weight_bytes": seals["shared"].weight_bytes,
                "param_bytes_4x": 4 * int(spec.parameters),
                "parameters": int(spec.parameters),
                "graph_weight_bytes": graph_weight_bytes(seals["shared"], tower.name),
                "torch_module_param_bytes": sum(4 * p.numel() for p in module.parameters()),
                "agreement": check,
                "speed": speed,
            }
        )
    del seals, recipe
    gc_collect()
    return results


E2E_METHODS = ("dga-seal", "dga-seal-shared", "dga-seal-recompute", "dga-seal-whole", "dga-torch")
# dga-seal: open_seal's defaults (weights "auto", the tower's training chunk); -whole: the whole batch per graph run


def bench_e2e(name: str, seal_path: Path, key: bytes, args, log) -> dict:
    """End-to-end dga training steps/s through the seal vs a torch loop through the same frozen backbone.

    Each method gets its own opened seal and adapters (benchmarks/train_steps.py); rounds run every
    method once in a shuffled order.
    """
    from train_steps import make_step

    from sealkit.compile.recipe import load_recipe
    from sealkit.runtime.seal import open_seal

    file, options = RECIPES[name]
    steps = {}
    for method in E2E_METHODS:
        recipe = load_recipe(EXPORT / file, **options) if method == "dga-torch" else None
        weights = "shared" if method.endswith("-shared") else "auto"
        chunk = args.batch if method.endswith("-whole") else 0
        steps[method] = make_step(method, open_seal(seal_path, key=key, threads=args.threads, weights=weights, training_chunk=chunk), recipe, args.batch)
    losses = {method: [step() for _ in range(2)] for method, step in steps.items()}  # warm-up; same losses: same adapters and backbone
    log(f"{name}: e2e warm-up losses {json.dumps(losses)}")
    times = {m: [] for m in steps}
    order = list(steps)
    rng = random.Random(1)
    for _ in range(args.e2e_rounds):
        rng.shuffle(order)
        for method in order:
            time.sleep(args.gap)
            started = time.perf_counter()
            steps[method]()
            times[method].append(time.perf_counter() - started)
    out = {"rounds": args.e2e_rounds, "warmup_losses": losses, "seconds": times}
    for method in steps:
        out[method] = {"steps_per_s": 1 / statistics.median(times[method]), "median_s": statistics.median(times[method])}
        ratios = [t / s for s, t in zip(times[method], times["dga-torch"])]  # > 1: faster than torch
        out[method]["speed_vs_torch"] = statistics.median(ratios)
        out[method]["speed_vs_torch_p25_p75"] = _spread(ratios)
    log(f"{name}: e2e steps/s " + ", ".join(f"{m} {out[m]['steps_per_s']:.2f} ({out[m]['speed_vs_torch']:.2f}x torch)" for m in steps))
    return out


def memory_for(name: str, seal_path: Path, key_path: Path, args, log) -> dict:
    out = {}
    for mode in MODES + ("torch",):
        cfg = {"recipe": name, "seal": str(seal_path), "key": str(key_path), "mode": mode, "batch": args.batch, "seq": args.seq, "threads": args.threads}
        samples = [run_memory_worker(cfg) for _ in range(args.memory_runs)]
        # RSS is nearly deterministic; keep the run with the median "sessions" figure
        samples.sort(key=lambda s: s["sessions"])
        m = samples[len(samples) // 2]
        base = m["baseline"]
        m["decrypt_memory"] = m["opened"] - base
        m["opened_memory"] = m["sessions"] - base
        m["first_run_memory"] = m["first_vjp"] - base
        m["peak_forward_over_baseline"] = m["peak_forward"] - base
        m["peak_vjp_over_baseline"] = m["peak_vjp"] - base
        m["peak_load_over_baseline"] = m["peak_load"] - base
        m["opened_ratio"] = m["opened_memory"] / m["weight_bytes"]
        out[mode] = m
        log(
            f"{name}: memory {mode}: decrypt {m['decrypt_memory'] / 2**20:.0f} MiB, sessions {m['opened_memory'] / 2**20:.0f} MiB, "
            f"after first fwd+vjp {m['first_run_memory'] / 2**20:.0f} MiB, peak VJP {m['peak_vjp_over_baseline'] / 2**20:.0f} MiB over baseline"
        )
    return out


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def mib(n: float) -> str:
    return f"{n / 2**20:.1f}"


def _spread(values: list[float]) -> tuple[float, float]:
    """The 25th and 75th percentiles."""
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def _mark(x: float | None, target: float) -> str:
    if x is None:
        return "–"
    return f"{x:.2f}x " + ("✓" if x <= target else "✗")


def markdown(report: dict) -> str:
    lines = []
    cfg, machine = report["config"], report["machine"]
    lines.append(
        f"{machine['logical_cpus']}-core {machine['cpu']}, torch {machine['torch']}, onnxruntime {machine['onnxruntime']}; "
        f"threads: torch {machine['torch_threads']}, onnxruntime {cfg['threads']}. Batch {cfg['batch']}, text sequence {cfg['seq']}; "
        f"at least {cfg['repeats']} timed rounds (each runs every configuration once, shuffled) after {cfg['warmup']} warm-up rounds."
    )
    if report["results"]:
        lines += [
            "",
            "### Speed (median ms; ratio = seal / torch eager)",
            "",
            f"Medians over the quiet rounds (other processes took <= {cfg['quiet']:.0%} of the cores in use) where there were at least {MIN_QUIET}, "
            "else over all rounds (basis column); the last column gives the ratios over all rounds.",
            "",
            "| recipe / tower | op | torch | seal shared | ratio | seal copied | ratio | target | basis (quiet / all rounds) | ratio over all rounds (shared / copied) | per-round ratio, shared: median [p25-p75] |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
        ]
        for r in report["results"]:
            sp = r["speed"]
            for op, (label, _) in OPS.items():
                if op not in sp:
                    continue
                s, t = sp[op], TARGETS[op]
                h = s["headline_ms"]
                lo, hi = s["paired_ratio_spread_shared"]
                lines.append(
                    f"| {r['recipe']} / {r['tower']} | {label} | {h['torch']:.1f} | {h['shared']:.1f} | {_mark(s['headline_ratio_shared'], t)} "
                    f"| {h['copied']:.1f} | {_mark(s['headline_ratio_copied'], t)} | ≤ {t:.1f}x | {s['basis']} ({sp['quiet_rounds']} / {sp['rounds']}) "
                    f"| {s['ratio_shared']:.2f}x / {s['ratio_copied']:.2f}x | {s['paired_ratio_shared']:.2f}x [{lo:.2f}-{hi:.2f}] |"
                )
        if report.get("pair_sum"):
            for op, (label, _) in OPS.items():
                s, t = report["pair_sum"][op], TARGETS[op]
                lines.append(
                    f"| pair = minilm + efficientnet (sum) | {label} | {s['torch']:.1f} | {s['shared']:.1f} | {_mark(s['shared'] / s['torch'], t)} "
                    f"| {s['copied']:.1f} | {_mark(s['copied'] / s['torch'], t)} | ≤ {t:.1f}x | | | |"
                )
    if report.get("e2e"):
        lines += [
            "",
            f"### End-to-end dga training (batch {cfg['batch']}; steps/s, median over {cfg['e2e_rounds']} interleaved rounds)",
            "",
            "speed vs torch = torch's step time / the method's, per round (median [p25-p75]); > 1 is faster than the torch loop.",
            "",
            "Residuals: the seal's one-forward training graphs; weights as `open_seal` opens them by default (`auto`: copied",
            "for a graph with up to 32 MiB of weights, shared above), and all shared. Recompute: forward + VJP, default weights.",
            "Whole batch: residuals, default weights, the whole batch in one run of each graph (before the towers' training chunk).",
            "",
            "| recipe | dga through the seal, residuals, default weights | residuals, shared weights | recompute | whole batch | torch loop, same adapters, "
            "frozen backbone | residuals (default) vs torch | residuals (shared) vs torch | recompute vs torch | whole batch vs torch |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, e in report["e2e"].items():
            cells = [f"{e[m]['steps_per_s']:.2f}" if m in e else "-" for m in E2E_METHODS]  # runs from before the shared row lack it
            vs = [f"{e[m]['speed_vs_torch']:.2f}x [{e[m]['speed_vs_torch_p25_p75'][0]:.2f}-{e[m]['speed_vs_torch_p25_p75'][1]:.2f}]" if m in e else "-" for m in E2E_METHODS[:-1]]
            lines.append(f"| {name} | {' | '.join(cells)} | {' | '.join(vs)} |")
    if report["memory"]:
        lines += [
            "",
            "### Memory (MiB over the RSS after imports; a fresh process per row)",
            "",
            "| recipe | runtime | weights | after open (decrypt) | after sessions = opened memory | opened / weights | after first fwd + VJP | peak in forward | peak in VJP | peak while loading |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, mem in report["memory"].items():
            for mode in MODES + ("torch",):
                m = mem[mode]
                w = m["weight_bytes"]
                ratio = _mark(m["opened_ratio"], TARGETS["memory"]) if mode != "torch" else f"{m['opened_ratio']:.2f}x"
                label = f"seal {mode}" if mode != "torch" else "torch eager (reference)"
                lines.append(
                    f"| {name} | {label} | {mib(w)} | {mib(m['decrypt_memory'])} | {mib(m['opened_memory'])} | {ratio} | {mib(m['first_run_memory'])} "
                    f"| {mib(m['peak_forward_over_baseline'])} ({m['peak_forward_over_baseline'] / w:.1f}x) "
                    f"| {mib(m['peak_vjp_over_baseline'])} ({m['peak_vjp_over_baseline'] / w:.1f}x) | {mib(m['peak_load_over_baseline'])} |"
                )
        lines += [
            "",
            "Weights: the seal's decrypted weight pool (seal.weight_bytes; for the torch row, 4 x the module's parameters, "
            "without MiniLM's word-embedding table, which the seal keeps in its pool). Baselines (RSS after imports), MiB: "
            + ", ".join(f"{name} {mode} {mib(mem[mode]['baseline'])}" for name, mem in report["memory"].items() for mode in MODES + ("torch",)),
        ]
    return "\n".join(lines)


def machine_info(threads: int) -> dict:
    import onnxruntime
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:
        physical = None
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "onnxruntime_threads": threads,
        "onnxruntime_default_threads": f"intra_op_num_threads=0: onnxruntime picks the physical core count ({physical})",
        "loadavg_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="minilm,efficientnet", help=f"comma-separated, from {sorted(RECIPES)}")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64, help="sequence length of text towers")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds (>= 10 recommended); more are run, up to --max-rounds, until this many are quiet")
    parser.add_argument("--max-rounds", type=int, default=60, help="stop adding rounds here even if too few were quiet")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="...or once a tower's timing has run this long")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads and onnxruntime intra-op threads")
    parser.add_argument(
        "--gap", type=float, default=0.1, help="seconds of sleep before each timed call: onnxruntime's pool threads spin for ~50 ms after a run, torch's for ~20 ms"
    )
    parser.add_argument("--quiet", type=float, default=0.15, help="a round is 'quiet' when other processes took at most this share of the cores in use")
    parser.add_argument("--memory-runs", type=int, default=1, help="fresh subprocesses per memory configuration")
    parser.add_argument("--e2e", action="store_true", help="also time end-to-end dga training steps against a torch loop")
    parser.add_argument("--e2e-rounds", type=int, default=10)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--seal-dir", type=Path, help="export seals here (reusing existing ones and seal.key)")
    parser.add_argument("--json", type=Path, help="write the full results here")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_worker:
        cfg = json.loads(args.memory_worker)
        result = memory_worker_torch(cfg) if cfg["mode"] == "torch" else memory_worker_seal(cfg)
        print(json.dumps(result))
        return 0

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {sorted(RECIPES)}")
    missing = [n for n in names if not (EXPORT / RECIPES[n][0]).is_file()]
    if missing:
        parser.error(f"recipe file(s) {[RECIPES[n][0] for n in missing]} not found in {EXPORT}")

    import torch

    from sealkit.seal.crypto import read_key, write_keys

    torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    tmp = None
    if args.seal_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="seal_speed_")
        seal_dir = Path(tmp.name)
    else:
        seal_dir = args.seal_dir
        seal_dir.mkdir(parents=True, exist_ok=True)
    key_path = seal_dir / "seal.key"
    if not key_path.exists():
        write_keys(seal_dir)
    key = read_key(key_path)

    report = {
        "machine": machine_info(args.threads),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "memory_worker"},
        "targets": TARGETS,
        "results": [],
        "weights": {},
        "memory": {},
    }
    log(f"machine: {json.dumps(report['machine'])}")
    try:
        paths = {name: ensure_seal(name, seal_dir, key, log) for name in names}
        for name in names:
            if not args.no_speed:
                report["results"] += bench_recipe(name, paths[name], key, args, log)
            if args.e2e:
                report.setdefault("e2e", {})[name] = bench_e2e(name, paths[name], key, args, log)
            if not args.no_memory:
                from sealkit.runtime.seal import open_seal

                seal = open_seal(paths[name], key=key)
                report["weights"][name] = {
                    "seal_weight_bytes": seal.weight_bytes,
                    "param_bytes_4x": 4 * sum(t.spec.parameters for t in seal.towers.values()),
                }
                del seal
                report["memory"][name] = memory_for(name, paths[name], key_path, args, log)
    finally:
        if tmp is not None:
            tmp.cleanup()

    # The pair as the sum of both towers, when no two-tower recipe was measured.
    by = {r["recipe"]: r for r in report["results"]}
    if "pair" not in by and "minilm" in by and "efficientnet" in by:
        report["pair_sum"] = {
            op: {who: by["minilm"]["speed"][op]["headline_ms"][who] + by["efficientnet"]["speed"][op]["headline_ms"][who] for who in ("torch",) + MODES}
            for op in OPS
        }
    report["machine"]["loadavg_end"] = os.getloadavg()
    table = markdown(report)
    report["markdown"] = table
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
