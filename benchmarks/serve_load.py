"""Load test of `sealkit serve` on loopback: throughput and latency, batching on vs off, local vs Ray engine.

    python benchmarks/serve_load.py SEAL --adapters DIR --key KEY [--concurrency 1,4,16] [--seconds 5] [--repeats 3]
    python benchmarks/serve_load.py SEAL --adapters DIR --key KEY --modes batching,ray-1,ray-2

Modes: `batching` and `no-batching` are `sealkit serve` (the local engine); `ray-N` is the Ray
Serve app (`--engine ray`) with N backbone replicas, all ray-N apps deployed side by side on one
local Ray cluster by benchmarks/ray_apps.py. Memory per process (server; Ray frontend and each
backbone replica, and the whole Ray cluster) is read at the end.

For each mode (batching, no batching) a server is started as its own process (`python -m sealkit
serve ... --port 0`), so the load generator does not share its interpreter. Then, for each
concurrency level, that many client threads (one keep-alive httpx client each) send requests for
`--seconds`, `--repeats` times, alternating between the modes so that changing machine load hits
both alike; latencies of the repeats are pooled. Requests go round-robin over every task in DIR
and over a set of texts (or generated images) of different lengths: /classify for classification tasks, /retrieve (after indexing `--index` items)
for retrieval tasks. Reported: requests/s, items/s, p50 and p99 latency, and the server's mean
backbone batch size over the level (from /health). Client and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

TEXTS = [
    "great",
    "a gripping, beautifully acted film",
    "tedious and far too long, with a plot that makes no sense and actors who seem to know it",
    "one of the best films of the year",
    "a disappointing sequel that forgets what made the first one work",
    "funny, warm and surprisingly moving",
    "I wanted to leave after twenty minutes",
    "a small masterpiece of tension, grief and humour, held together by a remarkable lead performance",
]


def start_server(args, batching: bool) -> tuple[subprocess.Popen, str, list[str]]:
    command = [
        sys.executable, "-m", "sealkit", "serve", args.seal, "--adapters", str(args.adapters), "--port", "0",
        "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), "--max-queue", "1024",
        "--log-level", "warning", "--poll-seconds", "0",
    ]
    if args.key:
        command += ["--key", str(args.key)]
    if not batching:
        command.append("--no-batching")
    command += ["--weights", args.weights, "--threads", str(args.threads)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "300"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(line) for line in process.stdout], daemon=True).start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for line in list(lines):
            if "serving on " in line:
                return process, line.split("serving on ")[1].split()[0], lines
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start:\n" + "".join(lines[-30:]))


def start_ray(args, counts: list[int]) -> tuple[subprocess.Popen, dict[str, str]]:
    """benchmarks/ray_apps.py as its own process: one local Ray cluster with an app per replica count."""
    command = [
        sys.executable, str(Path(__file__).with_name("ray_apps.py")), args.seal, "--adapters", str(args.adapters),
        "--replicas", ",".join(map(str, counts)), "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), "--weights", args.weights,
        "--threads", str(args.threads),
    ]
    if args.key:
        command += ["--key", str(args.key)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    urls: dict[str, str] = {}
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("ready ray-"):
            _, mode, url = line.split()
            urls[mode] = url
        if line.startswith("ready all"):
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # keep draining
            return process, urls
    raise SystemExit("the Ray apps did not start:\n" + "".join(lines[-30:]))


def memory(mode: str, process: subprocess.Popen, url: str) -> dict:
    """Resident memory (MB) of a local server process, or of a Ray app's replicas and its whole cluster."""
    import psutil

    if not mode.startswith("ray-"):
        return {"mode": mode, "server_mb": psutil.Process(process.pid).memory_info().rss / 2**20}
    with httpx.Client(base_url=url) as c:
        health = c.get("/health").json()
    cluster = [process.pid] + [p.pid for p in psutil.Process(process.pid).children(recursive=True)]
    total = 0
    for pid in cluster:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return {
        "mode": mode,
        "frontend_mb": health["frontend"].get("rss_mb"),
        "backbone_replicas_mb": [r.get("rss_mb") for r in health["batcher"]["replicas"]],
        "ray_cluster_mb": total / 2**20,
    }


def payloads(tasks: list[dict], seal_images: int) -> list[tuple[str, dict, int]]:
    """(path, json body, items) for each (task, input) pair, round-robin order."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(8):
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (seal_images, seal_images, 3), dtype=np.uint8)).save(buffer, "PNG")
        images.append(base64.b64encode(buffer.getvalue()).decode())
    out = []
    for i in range(len(TEXTS)):
        for task in tasks:
            field, value = ("texts", TEXTS[i]) if task["modality"] == "text" else ("images", images[i])
            op = "classify" if task["task"] == "classify" else "retrieve"
            out.append((f"/tasks/{task['name']}/{op}", {field: [value], "top_k": 3}, 1))
    return out


def run_level(url: str, work: list[tuple[str, dict, int]], concurrency: int, seconds: float) -> dict:
    """`concurrency` client threads sending for `seconds`: raw latencies, item and error counts."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    items = [0] * concurrency
    errors = [0] * concurrency
    barrier = threading.Barrier(concurrency + 1)
    stop = [0.0]

    def client(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            position = worker * 7
            barrier.wait()
            while time.perf_counter() < stop[0]:
                path, body, count = work[position % len(work)]
                position += 1
                started = time.perf_counter()
                response = c.post(path, json=body)
                elapsed = time.perf_counter() - started
                if response.status_code == 200:
                    latencies[worker].append(elapsed)
                    items[worker] += count
                else:
                    errors[worker] += 1

    threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    stop[0] = started + seconds
    barrier.wait()
    for t in threads:
        t.join()
    return {"latencies": [x for per in latencies for x in per], "items": sum(items), "errors": sum(errors), "seconds": time.perf_counter() - started}


def summarise(mode: str, concurrency: int, runs: list[dict], batches: int, rows: int, busy: float | None = None) -> dict:
    flat = np.array([x for r in runs for x in r["latencies"]])
    wall = sum(r["seconds"] for r in runs)
    return {
        "mode": mode,
        "concurrency": concurrency,
        "requests": int(flat.size),
        "errors": int(sum(r["errors"] for r in runs)),
        "seconds": wall,
        "rps": flat.size / wall,
        "items_per_s": sum(r["items"] for r in runs) / wall,
        "p50_ms": float(np.percentile(flat, 50) * 1000) if flat.size else float("nan"),
        "p99_ms": float(np.percentile(flat, 99) * 1000) if flat.size else float("nan"),
        "mean_batch_rows": rows / batches if batches else 0.0,
        "rps_per_repeat": [len(r["latencies"]) / r["seconds"] for r in runs],
        # Ray engine: the share of the wall time the backbone replicas spent running batches (summed over replicas)
        "backbone_busy": busy / wall if busy is not None else None,
    }


def prepare_server(url: str, index: int) -> tuple[list[dict], dict, list]:
    """Index items for retrieval tasks, warm every task's path; returns (tasks, seal, work)."""
    with httpx.Client(base_url=url, timeout=120) as c:
        tasks = c.get("/tasks").json()["tasks"]
        seal = c.get("/health").json()["seal"]
        for task in tasks:
            if task["task"] == "retrieve":
                for start in range(0, index, 32):
                    ids = [f"item{i}" for i in range(start, min(start + 32, index))]
                    texts = [f"{TEXTS[i % len(TEXTS)]} (item {i})" for i in range(start, start + len(ids))]
                    c.post(f"/tasks/{task['name']}/index", json={"texts": texts, "ids": ids}).raise_for_status()
        work = payloads(tasks, 64)
        for path, body, _ in work[: len(tasks) * 2]:
            c.post(path, json=body).raise_for_status()
    return tasks, seal, work


def batcher_stats(url: str) -> dict:
    with httpx.Client(base_url=url) as c:
        return c.get("/health").json()["batcher"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seal")
    parser.add_argument("--adapters", type=Path, required=True)
    parser.add_argument("--key", default=os.environ.get("SEALKIT_KEY"))
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode and level, alternating modes")
    parser.add_argument("--modes", default="batching,no-batching")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--weights", default="shared", help="the server's --weights (shared or copied)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads per backbone call in every server and Ray replica (0: all cores for sealkit serve, a replica's CPUs for Ray)")
    parser.add_argument("--index", type=int, default=200, help="items indexed for each retrieval task")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    results = []
    load_before = os.getloadavg()[0]
    modes = args.modes.split(",")
    servers = {}
    memories = []
    try:
        for mode in modes:  # every server up at once; an idle one costs memory, not CPU
            if not mode.startswith("ray-"):
                process, url, _ = start_server(args, batching=(mode == "batching"))
                servers[mode] = (process, url)
        counts = [int(m.split("-")[1]) for m in modes if m.startswith("ray-")]
        if counts:
            process, urls = start_ray(args, counts)
            servers.update({mode: (process, url) for mode, url in urls.items()})
        servers = {mode: servers[mode] for mode in modes}
        for _mode, (_, url) in servers.items():
            tasks, seal, work = prepare_server(url, args.index)
        for level in levels:
            runs: dict[str, list[dict]] = {m: [] for m in modes}
            counts = {m: [0, 0] for m in modes}
            busy = {m: (0.0 if m.startswith("ray-") else None) for m in modes}
            for _ in range(args.repeats):  # alternate the modes, so drifting machine load hits both alike
                for mode in modes:
                    url = servers[mode][1]
                    before = batcher_stats(url)
                    runs[mode].append(run_level(url, work, level, args.seconds))
                    after = batcher_stats(url)
                    counts[mode][0] += after["batches"] - before["batches"]
                    counts[mode][1] += after["rows"] - before["rows"]
                    if busy[mode] is not None:
                        busy[mode] += after["busy_s"] - before.get("busy_s", 0.0)
            for mode in modes:
                row = summarise(mode, level, runs[mode], *counts[mode], busy[mode])
                results.append(row)
                print(f"{mode:<12} c={level:<3} {row['rps']:8.1f} req/s  p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  mean batch {row['mean_batch_rows']:.1f}  backbone busy {row['backbone_busy'] if row['backbone_busy'] is None else round(row['backbone_busy'], 2)}  errors {row['errors']}  per repeat {[round(x) for x in row['rps_per_repeat']]}", flush=True)
        for mode, (process, url) in servers.items():
            memories.append(memory(mode, process, url))
            print(memories[-1], flush=True)
    finally:
        for process, _ in {id(p): (p, u) for p, u in servers.values()}.values():
            if process.stdin:
                process.stdin.close()
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    import onnxruntime

    print()
    print(f"seal '{seal['name']}' ({Path(args.seal).name}); tasks: {', '.join(t['name'] + ' (' + t['task'] + ', ' + t['method'] + ')' for t in tasks)}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores (shared by client and server), Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}")
    print(f"1-minute load average before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} (other processes on the machine add noise)")
    print(f"one item per request, {args.repeats} x {args.seconds:g} s per mode and level (alternating modes), --max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g} --weights {args.weights} --threads {args.threads}")
    print()
    print("| mode | concurrency | requests/s | p50 ms | p99 ms | mean backbone batch | backbone busy | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        busy_text = "-" if r["backbone_busy"] is None else f"{r['backbone_busy']:.2f}"
        print(f"| {r['mode']} | {r['concurrency']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['mean_batch_rows']:.1f} | {busy_text} | {r['errors']} |")
    print()
    print("| mode | process | resident MB |")
    print("|---|---|---:|")
    for m in memories:
        if "server_mb" in m:
            print(f"| {m['mode']} | sealkit serve (one process) | {m['server_mb']:.0f} |")
        else:
            print(f"| {m['mode']} | frontend replica | {m['frontend_mb']:.0f} |")
            for i, mb in enumerate(m["backbone_replicas_mb"]):
                print(f"| {m['mode']} | backbone replica {i + 1} | {mb:.0f} |")
    ray_total = [m["ray_cluster_mb"] for m in memories if "ray_cluster_mb" in m]
    if ray_total:
        print(f"| all ray-N apps | the whole local Ray cluster (driver, GCS, raylet, proxy, controller, every replica) | {ray_total[0]:.0f} |")
    if args.json:
        meta = {"load_average_before": load_before, "load_average_after": os.getloadavg()[0], "cores": os.cpu_count(), "seconds": args.seconds, "repeats": args.repeats, "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "threads": args.threads}
        args.json.write_text(json.dumps({"seal": seal, "tasks": tasks, "results": results, "memory": memories, "conditions": meta}, indent=2))


if __name__ == "__main__":
    main()
