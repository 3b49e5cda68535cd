"""One deployment: an opened seal, the tasks in an adapters folder, the batcher, and the HTTP server.

    deployment = Deployment(open_seal("model.seal", key=key), "adapters/", ServeConfig()).start()
    with BackgroundServer(deployment) as server:      # uvicorn on 127.0.0.1, a free port
        httpx.get(server.url + "/tasks")

`sealkit serve` is `serve_forever`. The seal key comes from the caller (a key file or
$SEALKIT_KEY), never from a request. Never imports torch.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sealkit.errors import ServeError
from sealkit.runtime.seal import Seal
from sealkit.serve.batcher import Batcher
from sealkit.serve.registry import Registry
from sealkit.serve.service import Limits, Service

log = logging.getLogger("sealkit.serve")


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    batching: bool = True
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256
    limits: Limits = field(default_factory=Limits)
    poll_seconds: float = 1.0  # rescan the adapters folder this often; 0: only on POST /admin/reload
    admin_token: str | None = None  # when set, /admin/* needs "Authorization: Bearer <token>"
    log_level: str = "info"
    admin_without_token: bool = False  # opt-in: /admin/* without a token, for a loopback-only server and loopback clients

    @property
    def admin_enabled(self) -> bool:
        return bool(self.admin_token) or self.admin_without_token

    def check(self) -> ServeConfig:
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"--port must be 0..65535, got {self.port}")
        if self.max_batch < 1:
            problems.append(f"--max-batch must be at least 1, got {self.max_batch}")
        if not 0 <= self.max_wait_ms <= 1000:
            problems.append(f"--max-wait-ms must be 0..1000, got {self.max_wait_ms}")
        if self.max_queue < 1:
            problems.append(f"--max-queue must be at least 1, got {self.max_queue}")
        if self.limits.max_request_bytes < 1024:
            problems.append(f"--max-request-bytes must be at least 1024, got {self.limits.max_request_bytes}")
        if self.limits.max_items < 1:
            problems.append(f"--max-items must be at least 1, got {self.limits.max_items}")
        if self.poll_seconds < 0:
            problems.append(f"--poll-seconds must be 0 or more, got {self.poll_seconds}")
        if self.admin_without_token and not is_loopback(self.host):
            problems.append(f"--admin-without-token needs a loopback --host (127.0.0.1 or ::1), got {self.host}; set SEALKIT_ADMIN_TOKEN instead")
        if problems:
            raise ServeError("; ".join(problems))
        return self


class Deployment:
    """Seal + registry + batcher + service, and the thread that watches the adapters folder."""

    def __init__(self, seal: Seal, adapters_dir: str | Path | None, config: ServeConfig | None = None, batcher: Batcher | None = None):
        self.config = (config or ServeConfig()).check()
        self.seal = seal
        self.registry = Registry(seal, adapters_dir)
        # `batcher`: another backbone runner with Batcher's interface (the Ray engine's remote backbone)
        self.batcher = batcher or Batcher(self.config.max_batch, self.config.max_wait_ms, self.config.max_queue, enabled=self.config.batching)
        self.service = Service(self.registry, self.batcher, self.config.limits)
        self.started_at: float | None = None
        self.ready = False
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._warm: set[tuple] = set()
        self.registry.listeners.append(lambda event, task: self._warm_task(task) if self.ready and event != "unloaded" else None)

    def start(self) -> Deployment:
        report = self.registry.scan()
        for name, reason in report.refused.items():
            log.warning("not serving %s: %s", name, reason)
        for task in self.registry.tasks():
            self._warm_task(task)
        self.batcher.start()
        if self.config.poll_seconds > 0 and self.registry.dir is not None:
            self._poller = threading.Thread(target=self._poll, name="sealkit-adapter-poll", daemon=True)
            self._poller.start()
        self.started_at = time.time()
        self.ready = True
        return self

    def stop(self) -> None:
        self.ready = False
        self._stop.set()
        if self._poller is not None:
            self._poller.join(5)
        self.batcher.close()

    def _poll(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.registry.scan()
            except Exception:  # keep watching; a transient file system error must not stop it
                log.exception("scanning %s failed", self.registry.dir)

    def _warm_task(self, task) -> None:
        """Create the backbone sessions a task needs now (once per tower and graph), not on its first request."""
        for tower_name in task.runtime.towers:
            entries = task.runtime.entries(tower_name)
            key = (tower_name, bool(entries))
            if key in self._warm:
                continue
            tower = self.seal.tower(tower_name)
            try:
                tower.forward(warm_feeds(tower), entries)
                self._warm.add(key)
            except Exception as exc:  # warming is an optimisation; the first request would show the problem
                log.warning("could not warm tower %s: %s", tower_name, exc)

    def status(self) -> dict:
        return {
            "seal": {"id": self.seal.seal_id, "name": self.seal.manifest.name, "towers": sorted(self.seal.towers)},
            "tasks": len(self.registry),
            "refused": self.registry.refused,
            "uptime_s": round(time.time() - self.started_at, 1) if self.started_at else 0.0,
            "batcher": self.batcher.snapshot(),
            "indexes": self.service.index_sizes(),
        }


def warm_feeds(tower) -> dict[str, np.ndarray]:
    """A one-item input for a tower (zeros, ones for integer inputs): running it creates its sessions."""
    feeds = {}
    for spec in tower.spec.inputs:
        shape = [1 if i == 0 else 2 if isinstance(d, str) else d for i, d in enumerate(spec.shape)]
        feeds[spec.name] = np.ones(shape, dtype=spec.dtype) if spec.dtype.startswith("int") else np.zeros(shape, dtype=spec.dtype)
    return feeds


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost': addresses only this machine can reach."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warnings(config: ServeConfig) -> list[str]:
    """What an operator must hear before a server listens beyond this machine, or with admin off."""
    warnings = []
    if not is_loopback(config.host):
        warnings.append(
            f"listening on {config.host}, reachable from other machines: requests are neither authenticated nor encrypted; "
            "put an authenticating TLS proxy in front, or use --host 127.0.0.1"
        )
    if not config.admin_enabled:
        warnings.append("the /admin API is disabled (set SEALKIT_ADMIN_TOKEN to enable it; tasks still follow the adapters folder)")
    return warnings


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one (read it back with getsockname)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only then, and
    # without it a keep-alive client waits ~40 ms (Nagle + delayed ACK) for every response
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port or --host") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _uvicorn_server(deployment: Deployment):
    import uvicorn

    from sealkit.serve.app import create_app

    config = uvicorn.Config(
        create_app(deployment),
        log_level=deployment.config.log_level,
        access_log=deployment.config.log_level == "debug",
        timeout_graceful_shutdown=5,
        # the app bounds bodies itself; uvicorn's h11 protocol bounds the headers
    )
    return uvicorn.Server(config)


def serve_forever(deployment: Deployment, on_listening: Callable[[str], None] | None = None) -> None:
    """Run the HTTP server in this thread until Ctrl-C/SIGTERM, then stop the deployment."""
    for warning in exposure_warnings(deployment.config):
        log.warning(warning)
    sock = bind_socket(deployment.config.host, deployment.config.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    server = _uvicorn_server(deployment)
    if on_listening:
        on_listening(url)
    try:
        server.run(sockets=[sock])
    finally:
        deployment.stop()
        sock.close()


class BackgroundServer:
    """uvicorn in a daemon thread, for tests, benchmarks and embedding in other programs."""

    def __init__(self, deployment: Deployment, host: str = "127.0.0.1", port: int = 0):
        self.deployment = deployment
        self._sock = bind_socket(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self.url = f"http://{host}:{self.port}"
        self._server = _uvicorn_server(deployment)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, name="sealkit-http", daemon=True)

    def start(self, timeout: float = 20.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServeError(f"the HTTP server did not start within {timeout:.0f}s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
        self.deployment.stop()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
