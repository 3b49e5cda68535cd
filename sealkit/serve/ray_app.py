"""`sealkit serve --engine ray`: the same HTTP API on a Ray Serve cluster, the backbone scaled by replicas.

    ray start --head                      # or any running cluster; RAY_ADDRESS picks which
    sealkit serve model.seal --adapters adapters/ --key keys/seal.key --engine ray --replicas 4

or, composed into your own Ray app (`serve run sealkit.serve.ray_app:app_builder seal=... adapters=...`):

    from sealkit.serve.ray_app import build_app
    serve.run(build_app("model.seal", "adapters/", key="keys/seal.key", replicas=4), route_prefix="/")

Two deployments:
  - `backbone-<tower>` (one per tower of the seal, `replicas` of each): opens the seal once per
    replica and runs the tower's frozen forward graph on batches made by `@serve.batch` from
    requests of *any* task, grouped like sealkit/serve/batcher.py (plain graph: every task shares
    a batch; lga entries graph: one task per batch). This is what scales.
  - `frontend` (the HTTP ingress, `create_app` of sealkit/serve/app.py mounted with
    `@serve.ingress`, so routes, errors, limits and the OpenAPI schema are those of
    `sealkit serve`): the Registry of every adapter in the folder (watched; another seal's adapter
    refused while the others serve), each request's per-task input and output adapters, heads and
    retrieval indexes, and a bounded number of backbone calls in flight (503 beyond).

Every adapter is held by every frontend replica (they are kilobytes to a few MB), so any replica
serves any task and requests need no routing header; see docs/scaling.md for why this is used
instead of `@serve.multiplexed`. The key is read by each replica from a key file on its node
(`key`, or that node's SEALKIT_KEY): neither the key nor its path ever comes from a request, and
the key's bytes never enter Ray's object store or control plane. Never imports torch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import resource
import sys
import time
import uuid
from collections.abc import Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from sealkit.errors import ServeError
from sealkit.runtime.seal import open_seal
from sealkit.seal import crypto
from sealkit.seal.container import read_seal
from sealkit.serve.batcher import BackboneCall, Batcher, _resolve
from sealkit.serve.errors import QueueFullError
from sealkit.serve.server import Deployment, ServeConfig, warm_feeds

APP_NAME = "sealkit"


@dataclass
class BackboneRequest:
    """One request's backbone work as sent to a backbone replica (numpy arrays, pickled by Ray)."""

    feeds: dict[str, np.ndarray]
    entries: dict[str, np.ndarray] | None
    owner: Hashable | None  # (frontend replica, task load id) for the entries graph, else None
    task: str | None
    weight: int  # rows counted against the batch size (a call larger than a batch counts as one batch)


def _batch_rows(requests: list[BackboneRequest]) -> int:
    return sum(r.weight for r in requests)


def _memory() -> dict[str, float]:
    """This process's resident memory now and at its peak, in MB (Linux /proc; peak from getrusage)."""
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        out["rss_mb"] = round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return out


def _open(seal_path: str, key_path: str | None, verify_key: str | None, threads: int, weights: str):
    # key_path None: this node's SEALKIT_KEY (open_seal resolves it), never anything from a request
    return open_seal(seal_path, key=key_path, verify_key=verify_key, threads=threads, weights=weights)


@serve.deployment(name="backbone")
class Backbone:
    """One tower's frozen forward graph, opened once per replica, batched across tasks."""

    def __init__(self, seal_path: str, tower: str, key_path: str | None, verify_key: str | None, threads: int, weights: str, max_batch: int, max_wait_ms: float):
        self.seal = _open(seal_path, key_path, verify_key, threads, weights)
        self.tower = self.seal.tower(tower)
        self.runner = Batcher(max_batch, max_wait_ms, enabled=False)  # runs groups; counts batches
        self.forward.set_max_batch_size(max_batch)
        self.forward.set_batch_wait_timeout_s(max_wait_ms / 1000.0)
        self.tower.forward(warm_feeds(self.tower))  # create the plain graph's session now
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.mixed = {"max_tasks_in_batch": 0, "multi_task_batches": 0, "busy_s": 0.0}  # busy_s: time spent running batches

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005, batch_size_fn=_batch_rows)
    async def forward(self, requests: list[BackboneRequest]) -> list[tuple[Any, dict]]:
        """Each request's output rows (or its error), and this replica's statistics."""
        return await asyncio.to_thread(self._run, requests)

    def _run(self, requests: list[BackboneRequest]) -> list[tuple[Any, dict]]:
        started = time.perf_counter()
        calls = [BackboneCall(self.tower, r.feeds, r.entries, r.owner, task=r.task) for r in requests]
        groups: dict[tuple, list[BackboneCall]] = {}
        for call in calls:
            groups.setdefault(call.key, []).append(call)
        for group in groups.values():
            self.runner.execute(group)
            tasks = len({c.task for c in group})
            self.mixed["max_tasks_in_batch"] = max(self.mixed["max_tasks_in_batch"], tasks)
            self.mixed["multi_task_batches"] += tasks > 1
        self.mixed["busy_s"] += time.perf_counter() - started
        stats = self.stats()
        return [(c.future.exception() or c.future.result(), stats) for c in calls]

    def stats(self) -> dict[str, Any]:
        runner = self.runner.snapshot()
        return {
            "replica": self.replica,
            "pid": os.getpid(),
            "tower": self.tower.name,
            **{k: runner[k] for k in ("batches", "rows", "max_batch_rows")},
            **self.mixed,
            "torch_imported": "torch" in sys.modules,
            **_memory(),
        }


class RemoteBackbone:
    """The frontend's side of the backbone deployments, with the Batcher interface Service uses:
    submit() sends a call to its tower's deployment and returns a future; at most `max_queue`
    calls are in flight from this replica (more: QueueFullError, HTTP 503)."""

    enabled = True

    def __init__(self, handles: dict[str, DeploymentHandle], max_batch: int, max_queue: int):
        self.handles = handles
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.token = uuid.uuid4().hex  # makes task load ids unique across frontend replicas
        self._count = 0
        self.stats = {"calls": 0, "refused": 0}
        self.replicas: dict[str, dict] = {}  # latest statistics from each backbone replica

    def start(self) -> RemoteBackbone:
        return self

    def close(self, timeout: float = 5.0) -> None:
        pass

    def expect(self, delta: int) -> None:
        """Batching happens on the backbone replicas; nothing to announce here."""

    @property
    def full(self) -> bool:
        return self._count >= self.max_queue

    def submit(self, call: BackboneCall, expected: bool = False) -> Future:
        """Send one call (from the event loop of the frontend replica); its future gets the rows."""
        if self.full:
            self.stats["refused"] += 1
            raise QueueFullError(f"the backbone queue is full ({self.max_queue} requests waiting); retry shortly")
        owner = (self.token, call.owner) if call.owner is not None else None
        request = BackboneRequest(call.feeds, call.entries, owner, call.task, min(call.rows, self.max_batch))
        response = self.handles[call.tower.name].forward.remote(request)
        self._count += 1
        self.stats["calls"] += 1
        future: Future = Future()
        asyncio.get_running_loop().create_task(self._finish(response, future))
        return future

    async def _finish(self, response, future: Future) -> None:
        try:
            result, stats = await response
        except Exception as exc:  # the replica died or Ray refused the call
            _resolve(future, error=ServeError(f"the backbone call failed ({type(exc).__name__}: {str(exc)[:200]}); retry shortly"))
            return
        finally:
            self._count -= 1
        self.replicas[stats["replica"]] = stats
        if isinstance(result, BaseException):
            _resolve(future, error=result)
        else:
            _resolve(future, result)

    def snapshot(self) -> dict[str, Any]:
        replicas = list(self.replicas.values())
        batches, rows = sum(r["batches"] for r in replicas), sum(r["rows"] for r in replicas)
        return {
            "engine": "ray",
            **self.stats,
            "queued": self._count,
            "max_queue": self.max_queue,
            "max_batch": self.max_batch,
            "batches": batches,
            "rows": rows,
            "mean_batch_rows": round(rows / batches, 2) if batches else 0.0,
            "max_batch_rows": max((r["max_batch_rows"] for r in replicas), default=0),
            "max_tasks_in_batch": max((r["max_tasks_in_batch"] for r in replicas), default=0),
            "busy_s": sum(r["busy_s"] for r in replicas),
            "replicas": sorted(replicas, key=lambda r: (r["tower"], r["replica"])),
        }


class FrontendDeployment(Deployment):
    """A Deployment whose backbone is remote: it never creates the backbone's forward sessions."""

    def _warm_task(self, task) -> None:
        pass

    def status(self) -> dict:
        return {**super().status(), "frontend": {"pid": os.getpid(), "torch_imported": "torch" in sys.modules, **_memory()}}


@serve.deployment(name="frontend")
@serve.ingress()
class Frontend:
    """The HTTP API of `sealkit serve` over the adapters folder, sending backbone work to the backbones."""

    def __init__(self, backbones: dict[str, DeploymentHandle], seal_path: str, adapters: str, key_path: str | None, verify_key: str | None, config: ServeConfig):
        # the frontend runs tokenizers and token-embedding graphs (text input adapters act on token
        # embeddings), so it opens the seal too; its forward sessions are never created
        seal = _open(seal_path, key_path, verify_key, 1, "shared")
        if config.admin_token is None:  # from this node's environment, so the token is not in Ray's control plane
            config = dataclasses.replace(config, admin_token=os.environ.get("SEALKIT_ADMIN_TOKEN") or None)
        remote = RemoteBackbone(backbones, config.max_batch, config.max_queue)
        self.deployment = FrontendDeployment(seal, adapters, config, batcher=remote).start()

    def __serve_build_asgi_app__(self):
        from sealkit.serve.app import create_app

        return create_app(self.deployment)

    def __del__(self):
        self.deployment.stop()


def parse_replicas(value: str | int) -> tuple[int, int]:
    """'N' -> (N, N) fixed; 'MIN-MAX' -> autoscaling bounds."""
    text = str(value).strip()
    try:
        low, _, high = text.partition("-")
        bounds = (int(low), int(high or low))
    except ValueError:
        raise ServeError(f"--replicas must be a number N or bounds MIN-MAX, got {text!r}") from None
    if bounds[0] < 1 or bounds[1] < bounds[0]:
        raise ServeError(f"--replicas must be at least 1 (and MIN <= MAX), got {text!r}")
    return bounds


def resolve_key(key: str | Path | None) -> str | None:
    """The key file's absolute path (from `key` or this process's SEALKIT_KEY), or None to let each
    replica use its own node's SEALKIT_KEY. Replicas read the file; its bytes are never shipped."""
    path = crypto.resolve_key_path(key)
    return str(Path(path).resolve()) if path is not None else None


def build_app(
    seal: str | Path,
    adapters: str | Path,
    key: str | Path | None = None,
    verify_key: str | Path | None = None,
    config: ServeConfig | None = None,
    replicas: str | int = 1,
    replica_cpus: float = 1.0,
    threads: int = 0,
    weights: str = "auto",
    frontends: int = 1,
):
    """The Ray Serve application: one backbone deployment per tower, and the HTTP frontend.

    Checks the seal, the key and the folder here (one clear error) before anything is deployed.
    Paths are made absolute: every node must see the seal, the key file and the adapters folder at
    the same paths (a shared file system, or the same files copied to each node)."""
    config = (config or ServeConfig()).check()
    low, high = parse_replicas(replicas)
    seal_path = str(Path(seal).resolve())
    folder = Path(adapters).resolve()
    if not folder.is_dir():
        raise ServeError(f"--adapters {adapters} is not a folder; create it and put TASK.adapter files in it")
    file = read_seal(seal_path)
    key_path = resolve_key(key)
    file.check_key(crypto.read_key(key_path) if key_path else None)
    verify = str(Path(verify_key).resolve()) if verify_key is not None else None
    if verify is not None:
        file.verify_signature(verify)
    max_batch, max_wait = (config.max_batch, config.max_wait_ms) if config.batching else (1, 0.0)
    # autoscaling: add a replica when replicas hold more than a batch's worth of calls each
    autoscaling = {"min_replicas": low, "max_replicas": high, "target_ongoing_requests": max_batch}
    scaling: dict[str, Any] = {"num_replicas": low} if low == high else {"autoscaling_config": autoscaling}
    threads = threads or max(1, int(replica_cpus))
    backbones = {
        # max_ongoing_requests: a replica must accept a full batch, and the next one while it runs
        tower: Backbone.options(name=f"backbone-{tower}", ray_actor_options={"num_cpus": replica_cpus}, max_ongoing_requests=2 * max_batch + 2, **scaling).bind(
            seal_path, tower, key_path, verify, threads, weights, max_batch, max_wait
        )
        for tower in sorted(file.manifest.towers)
    }
    # the frontend's work per request is small (tokenize, adapters, heads): it takes no CPU reservation
    frontend = Frontend.options(num_replicas=frontends, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=max(config.max_queue, 100))
    return frontend.bind(backbones, seal_path, str(folder), key_path, verify, config)


def app_builder(args: dict[str, str]):
    """For `serve run sealkit.serve.ray_app:app_builder seal=S adapters=D [key=K replicas=N replica_cpus=C ...]`."""
    known = {"seal", "adapters", "key", "verify_key", "replicas", "replica_cpus", "threads", "weights", "frontends", "max_batch", "max_wait_ms", "max_queue"}
    unknown = sorted(set(args) - known)
    if unknown or "seal" not in args or "adapters" not in args:
        raise ServeError(f"app_builder takes seal=PATH adapters=DIR and optionally {sorted(known - {'seal', 'adapters'})}; got {sorted(args)}")
    config = ServeConfig(
        max_batch=int(args.get("max_batch", 32)),
        max_wait_ms=float(args.get("max_wait_ms", 5.0)),
        max_queue=int(args.get("max_queue", 256)),
    )
    return build_app(
        args["seal"], args["adapters"], key=args.get("key"), verify_key=args.get("verify_key"), config=config,
        replicas=args.get("replicas", 1), replica_cpus=float(args.get("replica_cpus", 1.0)), threads=int(args.get("threads", 0)),
        weights=args.get("weights", "auto"), frontends=int(args.get("frontends", 1)),
    )


def free_port(host: str) -> int:
    from sealkit.serve.server import bind_socket

    sock = bind_socket(host, 0)
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def serve_forever(app, host: str, port: int, on_listening=None) -> None:
    """Deploy `app` on the Ray cluster (RAY_ADDRESS, a cluster running on this machine, or a new
    local one) behind Serve's HTTP proxy on host:port, and keep it until Ctrl-C/SIGTERM."""
    import signal
    import threading

    import ray

    port = port or free_port(host)
    ray.init(address=os.environ.get("RAY_ADDRESS") or None, logging_level="warning", log_to_driver=False)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        try:
            serve.run(app, name=APP_NAME, route_prefix="/")
        except Exception as exc:  # a replica failed to start: say why in one line
            raise ServeError(f"the Ray app did not start: {str(exc).strip().splitlines()[-1][:300]}") from None
        if on_listening:
            on_listening(f"http://{host}:{port}")
        stop.wait()
    finally:
        try:
            serve.delete(APP_NAME)
        finally:
            ray.shutdown()
