"""Deploy the sealkit Ray Serve app at several backbone replica counts side by side, for serve_load.py.

    python benchmarks/ray_apps.py SEAL --adapters DIR --key KEY --replicas 1,2 [--cpus 2]

Starts a local Ray cluster (this process is its driver) with 2 x `--cpus` logical CPUs, so that
every app fits at once (only one gets load at a time), and deploys one app per replica count,
named ray-N at route prefix /ray-N: `--replicas N` backbone replicas of `--cpus / N` CPUs and as
many onnxruntime threads each (or `--threads`). Prints `ready ray-N URL` per app, then `ready all`, and keeps them
until stdin closes or SIGTERM; then removes them and stops the cluster.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seal")
    parser.add_argument("--adapters", required=True)
    parser.add_argument("--key", default=os.environ.get("SEALKIT_KEY"))
    parser.add_argument("--replicas", default="1,2")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="cores the backbone replicas of one app share")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--weights", default="shared")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads per replica (0: its CPUs)")
    args = parser.parse_args()

    import ray
    from ray import serve

    from sealkit.serve.ray_app import build_app, free_port
    from sealkit.serve.server import ServeConfig

    counts = [int(n) for n in args.replicas.split(",")]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ray.init(num_cpus=2 * args.cpus, include_dashboard=False, logging_level="warning", log_to_driver=False)
    try:
        port = free_port("127.0.0.1")
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        config = ServeConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=1024, poll_seconds=0)
        for n in counts:
            cpus = args.cpus / n
            app = build_app(args.seal, args.adapters, key=args.key, config=config, replicas=n, replica_cpus=cpus, threads=args.threads or max(1, int(cpus)), weights=args.weights)
            serve.run(app, name=f"ray-{n}", route_prefix=f"/ray-{n}")
            print(f"ready ray-{n} http://127.0.0.1:{port}/ray-{n}", flush=True)
        print("ready all", flush=True)
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
