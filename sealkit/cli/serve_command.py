"""`sealkit serve`: one frozen backbone serving every task (adapter file) in a folder over HTTP.

Torch-free: onnxruntime + numpy, with FastAPI and uvicorn (`pip install sealkit[serve]`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import typer

from sealkit.cli.common import Device, DeviceOption, KeyOption, LogLevel, Weights, app, console, need_extra, read_key_bytes, warn
from sealkit.errors import ServeError


@app.command()
def serve(
    seal: Path = typer.Argument(..., help="The seal file."),
    adapters: Path = typer.Option(..., "--adapters", help="Folder of TASK.adapter files; each file is a task named TASK. Watched for changes."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default; 0.0.0.0 exposes the server)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on; 0 picks a free one (printed)."),
    key: Optional[Path] = KeyOption,
    device: Device = DeviceOption,
    verify_key: Optional[Path] = typer.Option(None, "--verify-key", help="The owner's public key; refuse the seal unless it verifies."),
    max_batch: int = typer.Option(32, "--max-batch", help="Most items in one backbone call."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="Longest a request waits for others to share its backbone call."),
    max_queue: int = typer.Option(256, "--max-queue", help="Most requests waiting for the backbone; more get 503."),
    max_request_bytes: int = typer.Option(8 * 2**20, "--max-request-bytes", help="Largest request body (413 above)."),
    max_items: int = typer.Option(64, "--max-items", help="Most texts or images in one request (413 above)."),
    no_batching: bool = typer.Option(False, "--no-batching", help="Run each request's backbone call alone, at once."),
    poll_seconds: float = typer.Option(1.0, "--poll-seconds", help="Rescan the adapters folder this often (0: only on POST /admin/reload)."),
    threads: int = typer.Option(0, "--threads", help="onnxruntime threads per backbone call (0: all cores)."),
    weights: Weights = typer.Option("shared", "--weights", help="shared: the weights held once (least memory); copied: onnxruntime's own optimised copy per graph (faster small batches, about one more weights' worth of memory)."),
    log_level: LogLevel = typer.Option("info", "--log-level", help="Server log level."),
) -> None:
    """Serve every adapter in a folder from one backbone: /tasks, /tasks/NAME/embed|classify|index|retrieve, /docs.

    The seal key comes from --key or $SEALKIT_KEY only, never from a request. Set
    $SEALKIT_ADMIN_TOKEN to require 'Authorization: Bearer <token>' on /admin/*.
    """
    need_extra("serve", "sealkit serve")
    log_level = log_level.value
    from sealkit.runtime.seal import open_seal
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
    ).check()
    if not adapters.is_dir():
        raise ServeError(f"--adapters {adapters} is not a folder; create it and put TASK.adapter files in it")
    opened = open_seal(seal, key=read_key_bytes(key), verify_key=verify_key, providers=device.value, threads=threads, weights=weights.value)
    deployment = Deployment(opened, adapters, config).start()
    tasks = deployment.registry.tasks()
    console.print(f"seal '{opened.manifest.name}' ({opened.seal_id}): {len(tasks)} task(s) from {adapters}: {', '.join(t.name for t in tasks) or 'none yet'}", highlight=False, soft_wrap=True)
    for name, reason in deployment.registry.refused.items():
        warn(f"refused {name}: {reason}")
    mode = f"batching up to {max_batch} items / {max_wait_ms:g} ms" if not no_batching else "no batching"
    serve_forever(deployment, on_listening=lambda url: console.print(f"serving on {url} ({mode}); API docs at {url}/docs", highlight=False, soft_wrap=True))
