"""`sealkit serve`: one frozen backbone serving every task (adapter file) in a folder over HTTP.

Torch-free: onnxruntime + numpy, with FastAPI and uvicorn (`pip install sealkit[serve]`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import typer

from sealkit.cli.common import Device, DeviceOption, KeyOption, LogLevel, VerifyKeyOption, Weights, WeightsOption, app, console, need_extra, open_seal_checked, warn
from sealkit.errors import ServeError


@app.command()
def serve(
    seal: Path = typer.Argument(..., help="The seal file."),
    adapters: Path = typer.Option(..., "--adapters", help="Folder of TASK.adapter files; each file is a task named TASK. Watched for changes."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default; 0.0.0.0 exposes the server)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on; 0 picks a free one (printed)."),
    key: Optional[Path] = KeyOption,
    device: Device = DeviceOption,
    verify_key: Optional[Path] = VerifyKeyOption,
    max_batch: int = typer.Option(32, "--max-batch", help="Most items in one backbone call."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="Longest a request waits for others to share its backbone call."),
    max_queue: int = typer.Option(256, "--max-queue", help="Most requests waiting for the backbone; more get 503."),
    max_request_bytes: int = typer.Option(8 * 2**20, "--max-request-bytes", help="Largest request body (413 above)."),
    max_items: int = typer.Option(64, "--max-items", help="Most texts or images in one request (413 above)."),
    no_batching: bool = typer.Option(False, "--no-batching", help="Run each request's backbone call alone, at once."),
    poll_seconds: float = typer.Option(1.0, "--poll-seconds", help="Rescan the adapters folder this often (0: only on POST /admin/reload)."),
    threads: int = typer.Option(0, "--threads", help="onnxruntime threads per backbone call (0: all cores)."),
    weights: Weights = WeightsOption,
    log_level: LogLevel = typer.Option("info", "--log-level", help="Server log level."),
    engine: str = typer.Option("local", "--engine", help="local: this process (the default); ray: a Ray Serve app on the Ray cluster (RAY_ADDRESS, or a local one), needs sealkit[ray]."),
    replicas: str = typer.Option("1", "--replicas", help="--engine ray: backbone replicas per tower, N or autoscaling bounds MIN-MAX."),
    replica_cpus: float = typer.Option(1.0, "--replica-cpus", help="--engine ray: CPUs Ray reserves for each backbone replica (also its onnxruntime threads unless --threads)."),
    admin_without_token: bool = typer.Option(False, "--admin-without-token", help="Enable /admin/* without a token, for loopback clients of a loopback-only server."),
) -> None:
    """Serve every adapter in a folder from one backbone: /tasks, /tasks/NAME/embed|classify|index|retrieve, /docs.

    The seal key comes from --key or $SEALKIT_KEY only, never from a request. Set
    $SEALKIT_ADMIN_TOKEN to enable /admin/* with 'Authorization: Bearer <token>'; without it the
    admin API is disabled, unless --admin-without-token on a loopback --host.
    """
    need_extra("serve", "sealkit serve")
    log_level, weights = log_level.value, weights.value
    from sealkit.serve.server import Deployment, ServeConfig, serve_forever
    from sealkit.serve.service import Limits

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ServeConfig(
        host=host,
        port=port,
        batching=not no_batching,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        limits=Limits(max_items=max_items, max_request_bytes=max_request_bytes),
        poll_seconds=poll_seconds,
        admin_token=os.environ.get("SEALKIT_ADMIN_TOKEN") or None,
        log_level=log_level,
        admin_without_token=admin_without_token,
    ).check()
    from sealkit.serve.server import exposure_warnings

    for warning in exposure_warnings(config):
        warn(f"warning: {warning}")
    if not adapters.is_dir():
        raise ServeError(f"--adapters {adapters} is not a folder; create it and put TASK.adapter files in it")
    if engine == "local" and (replicas != "1" or replica_cpus != 1.0):
        raise ServeError("--replicas and --replica-cpus apply to --engine ray; the local engine is one process")
    if engine != "local":
        return _serve_ray(engine, seal, adapters, key, verify_key, config, replicas, replica_cpus, threads, weights)
    opened = open_seal_checked(seal, key, verify_key, providers=device.value, threads=threads, weights=weights)
    deployment = Deployment(opened, adapters, config).start()
    tasks = deployment.registry.tasks()
    console.print(f"seal '{opened.manifest.name}' ({opened.seal_id}): {len(tasks)} task(s) from {adapters}: {', '.join(t.name for t in tasks) or 'none yet'}", highlight=False, soft_wrap=True)
    for name, reason in deployment.registry.refused.items():
        warn(f"refused {name}: {reason}")
    mode = f"batching up to {max_batch} items / {max_wait_ms:g} ms" if not no_batching else "no batching"
    serve_forever(deployment, on_listening=lambda url: console.print(f"serving on {url} ({mode}); API docs at {url}/docs", highlight=False, soft_wrap=True))


def _serve_ray(engine: str, seal: Path, adapters: Path, key, verify_key, config, replicas: str, replica_cpus: float, threads: int, weights: str) -> None:
    if engine != "ray":
        raise ServeError(f"--engine must be local or ray, got {engine!r}")
    if replica_cpus <= 0:
        raise ServeError(f"--replica-cpus must be more than 0, got {replica_cpus:g}")
    try:
        from sealkit.serve import ray_app
    except ImportError:
        raise ServeError("--engine ray needs Ray Serve: pip install 'sealkit[ray]'") from None
    config.admin_token = None  # each frontend replica reads SEALKIT_ADMIN_TOKEN from its own node's environment
    app_ = ray_app.build_app(seal, adapters, key=key, verify_key=verify_key, config=config, replicas=replicas, replica_cpus=replica_cpus, threads=threads, weights=weights)
    low, high = ray_app.parse_replicas(replicas)
    scale = f"{low}" if low == high else f"{low}-{high} (autoscaling)"
    mode = f"batching up to {config.max_batch} items / {config.max_wait_ms:g} ms" if config.batching else "no batching"
    ray_app.serve_forever(app_, config.host, config.port, on_listening=lambda url: console.print(f"serving on {url} (Ray Serve, {scale} backbone replica(s) per tower, {mode}); API docs at {url}/docs", highlight=False, soft_wrap=True))
