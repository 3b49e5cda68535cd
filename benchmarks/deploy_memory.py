"""Resident memory of one backbone serving N tasks, against N separately loaded models.

    python benchmarks/deploy_memory.py SEAL --adapter TASK.adapter --key KEY [--tasks 0,1,10,50] [--copies 1,2,5]

Every configuration runs in a fresh interpreter and reports its RSS after loading and after running
the same batch of inputs through every task (so every session it needs exists and onnxruntime's
buffers are allocated):

  tasks N   one opened seal, N tasks (N files: copies of --adapter under different names, each read
            separately) in a sealkit.serve Registry, the path `sealkit serve` uses; N=0 is the
            backbone alone (one forward pass, no adapter).
  copies K  K separately opened copies of the seal, one task each: the proxy for K fully fine-tuned
            models, each with its own weights and sessions. A real fully fine-tuned ONNX model per
            task costs at least this much (same graph, same weights size), so the proxy is generous
            to the baseline. Include 50 in --copies to measure 50 real copies (MiniLM: ~5 GB);
            without it, the 50-copy figure is extrapolated linearly (least squares), and says so.

  server N  (--server) the same through `sealkit serve`'s Deployment and HTTP server, one request per task.

Target: tasks 50 <= 1.10 x (tasks 0 + 50 x the adapter's in-memory size). Torch is never imported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 1e6
TEXTS = [
    "a gripping, beautifully acted film",
    "tedious and far too long",
    "the plot makes no sense at all, but the actors seem to enjoy it",
    "one of the best films of the year",
    "a disappointing sequel",
    "funny, warm and surprisingly moving",
    "I wanted to leave after twenty minutes",
    "a small masterpiece",
]


def _rss() -> int:
    import gc

    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss


def _workload(runtime, seal) -> None:
    """Run the same batch through a task: its query tower's modality decides texts or images."""
    import numpy as np

    modality = runtime.query_modality
    if modality == "text":
        items = TEXTS
    else:
        size = seal.manifest.towers[runtime.spec.query_tower].preprocessing["size"]
        items = [np.full((*size, 3), 40 * i, np.uint8) for i in range(len(TEXTS))]
    if runtime.spec.task == "classify":
        runtime.classify(items, modality, top_k=1)
    else:
        runtime.embed(items, modality)


def child(mode: str, count: int, seal_path: str, key: str, folder: str, threads: int) -> dict:
    import numpy as np  # noqa: F401  (import everything first: the baseline is the imported code)
    import onnxruntime  # noqa: F401

    from sealkit.runtime.inputs import plain_forward
    from sealkit.runtime.seal import open_seal
    from sealkit.runtime.task import TaskRuntime
    from sealkit.serve.registry import Registry

    adapters = sorted(Path(folder).glob("*.adapter"))
    if mode == "server":
        import httpx

        from sealkit.serve.server import BackgroundServer, Deployment, ServeConfig

        served = Path(tempfile.mkdtemp(prefix="sealkit-mem-serve-"))
        for path in adapters[:count]:
            shutil.copy(path, served / path.name)
    baseline = _rss()
    started = time.perf_counter()
    keep = []
    adapter_bytes = 0
    if mode == "tasks":
        seal = open_seal(seal_path, key=key, threads=threads)
        if count == 0:
            tower = next(iter(seal.towers.values()))
            items = TEXTS if tower.spec.modality == "text" else [__import__("numpy").zeros((32, 32, 3), "uint8")] * len(TEXTS)
            plain_forward(tower, items)
        registry = Registry(seal)
        for path in adapters[:count]:
            task = registry.load(path)
            adapter_bytes += sum(int(v.nbytes) for v in task.runtime.tensors.values())
            _workload(task.runtime, seal)
        keep.append(registry)
    elif mode == "server":
        seal = open_seal(seal_path, key=key, threads=threads)
        deployment = Deployment(seal, served, ServeConfig(poll_seconds=0, log_level="warning")).start()
        server = BackgroundServer(deployment).start()
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for task in client.get("/tasks").json()["tasks"]:
                adapter_bytes += sum(int(v.nbytes) for v in deployment.registry.get(task["name"]).runtime.tensors.values())
                op = "classify" if task["task"] == "classify" else "embed"
                client.post(f"/tasks/{task['name']}/{op}", json={"texts": TEXTS}).raise_for_status()
        keep.append(server)
    else:
        for _ in range(count):
            seal = open_seal(seal_path, key=key, threads=threads)
            runtime = TaskRuntime(seal, adapters[0])
            adapter_bytes += sum(int(v.nbytes) for v in runtime.tensors.values())
            _workload(runtime, seal)
            keep.append(runtime)
    rss = _rss()
    assert "torch" not in sys.modules, "torch was imported"
    if mode == "server":
        shutil.rmtree(served, ignore_errors=True)
    return {"mode": mode, "count": count, "baseline_rss": baseline, "rss": rss, "delta": rss - baseline, "adapter_bytes": adapter_bytes, "seconds": time.perf_counter() - started}


def run_child(mode: str, count: int, args, folder: Path) -> dict:
    command = [sys.executable, __file__, "--child", f"{mode}:{count}", args.seal, "--key", str(args.key), "--folder", str(folder), "--threads", str(args.threads)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"{mode} {count} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares line through (count, MB): (intercept, slope)."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0
    return mean_y - slope * mean_x, slope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seal")
    parser.add_argument("--adapter", help="a trained adapter of this seal (copied under N names)")
    parser.add_argument("--key", default=os.environ.get("SEALKIT_KEY"))
    parser.add_argument("--tasks", default="0,1,10,50")
    parser.add_argument("--copies", default="1,2,5")
    parser.add_argument("--server", default="", help="also measure `sealkit serve` (HTTP server, one request per task) with these task counts, e.g. 1,50")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, count = args.child.split(":")
        print(json.dumps(child(mode, int(count), args.seal, args.key, args.folder, args.threads)))
        return
    if not args.adapter:
        parser.error("--adapter is required")

    tasks = [int(x) for x in args.tasks.split(",") if x]
    copies = [int(x) for x in args.copies.split(",") if x]
    folder = Path(tempfile.mkdtemp(prefix="sealkit-mem-"))
    try:
        for i in range(max(tasks + [1])):
            shutil.copy(args.adapter, folder / f"task{i:03d}.adapter")
        servers = [int(x) for x in args.server.split(",") if x]
        results = [run_child("tasks", n, args, folder) for n in tasks] + [run_child("copies", k, args, folder) for k in copies]
        results += [run_child("server", n, args, folder) for n in servers]
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    import psutil

    print(f"seal {Path(args.seal).name} ({Path(args.seal).stat().st_size / MB:.1f} MB file), adapter {Path(args.adapter).name} ({Path(args.adapter).stat().st_size / 1e3:.1f} kB file)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 1e9:.0f} GB, Python {platform.python_version()}, onnxruntime {__import__('onnxruntime').__version__}")
    print(f"RSS after imports (numpy, onnxruntime, sealkit): {results[0]['baseline_rss'] / MB:.0f} MB; 'minus imports' subtracts each process's own")
    print("(the server rows' baseline also holds fastapi, uvicorn and httpx)")
    print()
    print(f"{'configuration':<32}{'RSS MB':>10}{'minus imports MB':>18}{'adapters MB':>13}{'load+run s':>12}")
    for r in results:
        label = {"tasks": f"1 seal, {r['count']} task(s)", "copies": f"{r['count']} separate backbone(s)", "server": f"sealkit serve, {r['count']} task(s)"}[r["mode"]]
        print(f"{label:<32}{r['rss'] / MB:>10.0f}{r['delta'] / MB:>18.1f}{r['adapter_bytes'] / MB:>13.2f}{r['seconds']:>12.1f}")

    by_tasks = {r["count"]: r for r in results if r["mode"] == "tasks"}
    summary: dict = {}
    if copies:
        intercept, slope = _fit([(r["count"], r["delta"] / MB) for r in results if r["mode"] == "copies"])
        summary["copy_mb"] = slope
        print()
        measured = {r["count"]: r["delta"] / MB for r in results if r["mode"] == "copies"}
        if 50 in measured:
            summary["copies_50_mb"] = measured[50]
            print(f"separate backbones: {slope:.1f} MB per copy (least squares over {copies}); 50 copies measured: {measured[50]:.0f} MB")
        else:
            summary["copies_50_mb"] = intercept + 50 * slope
            print(f"separate backbones: {slope:.1f} MB per copy (least squares over {copies}); 50 copies EXTRAPOLATED linearly: {intercept + 50 * slope:.0f} MB")
    if 0 in by_tasks and 50 in by_tasks:
        backbone = by_tasks[0]["delta"] / MB
        per_adapter = by_tasks[50]["adapter_bytes"] / 50 / MB
        target = 1.10 * (backbone + 50 * per_adapter)
        got = by_tasks[50]["delta"] / MB
        summary.update(backbone_mb=backbone, adapter_mb=per_adapter, tasks_50_mb=got, target_mb=target, within_target=got <= target)
        print(f"1 seal, 50 tasks: {got:.1f} MB; target 1.10 x (backbone {backbone:.1f} + 50 x adapter {per_adapter:.3f}) = {target:.1f} MB: {'met' if got <= target else 'MISSED'}")
        if "copies_50_mb" in summary:
            print(f"50 tasks on one backbone use {got / summary['copies_50_mb'] * 100:.1f}% of the memory of 50 separate backbones")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
