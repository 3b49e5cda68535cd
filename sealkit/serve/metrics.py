"""Prometheus metrics for `sealkit serve` (GET /metrics), with prometheus-client.

Per task and endpoint: requests by status, latency histogram, items per request (the batch a client
sends). For the shared backbone: queue depth, backbone calls, batches and rows (so rows / batches is
the cross-task batch size), refused calls, loaded tasks. Each app has its own registry, so several
servers (or tests) in one process do not collide. Task names come from the registry only, so an
unknown name in a URL cannot create new label values. Never imports torch.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ITEM_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TASK_ENDPOINTS = {"embed", "classify", "index", "retrieve"}


class _BackboneCollector:
    """Reads the batcher's counters and the registry's size at scrape time."""

    def __init__(self, deployment) -> None:
        self.deployment = deployment

    def collect(self):
        stats = self.deployment.batcher.snapshot()
        yield GaugeMetricFamily("sealkit_queue_depth", "Backbone calls waiting or running now.", value=stats["queued"])
        yield GaugeMetricFamily("sealkit_tasks", "Tasks (adapters) loaded.", value=len(self.deployment.registry))
        for name, key, text in (
            ("sealkit_backbone_calls", "calls", "Backbone calls submitted by requests."),
            ("sealkit_backbone_batches", "batches", "Backbone runs (each serves one or more calls, across tasks)."),
            ("sealkit_backbone_rows", "rows", "Items run through the backbone; divided by batches: the mean batch size."),
            ("sealkit_backbone_refused", "refused", "Calls refused because the queue was full (503)."),
        ):
            yield CounterMetricFamily(name, text, value=stats[key])


class ServeMetrics:
    def __init__(self, deployment) -> None:
        self.deployment = deployment
        self.registry = CollectorRegistry()
        labels = ["task", "endpoint"]
        self.requests = Counter("sealkit_requests", "Task requests, by status code.", [*labels, "status"], registry=self.registry)
        self.latency = Histogram("sealkit_request_seconds", "Task request latency.", labels, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.items = Histogram("sealkit_request_items", "Texts or images per task request.", labels, buckets=ITEM_BUCKETS, registry=self.registry)
        self.registry.register(_BackboneCollector(deployment))

    def observe(self, path: str, status: int, seconds: float, items: int | None) -> None:
        """Record one request to /tasks/NAME/ENDPOINT (other paths are not task requests)."""
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "tasks" or parts[2] not in TASK_ENDPOINTS:
            return
        task = parts[1] if parts[1] in self.deployment.registry else "unknown"
        self.requests.labels(task, parts[2], str(status)).inc()
        self.latency.labels(task, parts[2]).observe(seconds)
        if items is not None:
            self.items.labels(task, parts[2]).observe(items)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
