"""`sealkit serve` extras: /docs works offline (every asset from this server), /metrics speaks
Prometheus per task, /health names the execution providers."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from sealkit.data.dataset import Dataset, Example
from sealkit.serve.app import create_app
from sealkit.serve.server import Deployment, ServeConfig

pytestmark = pytest.mark.usefixtures("torch_one_thread")
COLOURS = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def client(text_seal, tmp_path_factory):
    from sealkit.train.api import adapt
    from sealkit.train.loop import TrainConfig

    folder = tmp_path_factory.mktemp("served")
    words = Dataset([Example(text=f"a {c} {o}", label=c) for c in COLOURS for o in ("cat", "dog", "car")], name="words")
    adapt(text_seal, words, None, folder / "words.adapter", method="output", task="classify",
          config=TrainConfig(steps=2, batch=8, eval_every=2), progress=False, zero_shot=False)  # fmt: skip
    deployment = Deployment(text_seal, folder, ServeConfig(poll_seconds=0, log_level="warning")).start()
    with TestClient(create_app(deployment)) as c:
        yield c
    deployment.stop()


def references(html: str) -> list[str]:
    """Every URL a page can load: src/href attributes, url(...) and quoted http(s) or protocol-relative strings."""
    found = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    found += re.findall(r"""url\(\s*["']?([^"')]+)""", html)
    found += re.findall(r"""["'](https?://[^"']+|//[^"']+)["']""", html)
    return found


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_page_loads_everything_from_this_server(client, page):
    response = client.get(page)
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    urls = references(response.text)
    assert urls, response.text
    external = [u for u in urls if re.match(r"^(https?:)?//", u)]
    assert not external, external
    assert "http://" not in response.text and "https://" not in response.text
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
    if page == "/docs":
        assert any(u.endswith("swagger-ui-bundle.js") for u in urls)
        assert "/openapi.json" in response.text and client.get("/openapi.json").status_code == 200


def _samples(client) -> dict[tuple[str, tuple], float]:
    text = client.get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_latency_and_items_per_task(client):
    before = _samples(client)
    assert client.post("/tasks/words/classify", json={"texts": ["a red cat", "a blue dog"]}).status_code == 200
    assert client.post("/tasks/nope/classify", json={"texts": ["x"]}).status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = _samples(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("sealkit_requests_total", task="words", endpoint="classify", status="200") == 1
    assert delta("sealkit_requests_total", task="unknown", endpoint="classify", status="404") == 1  # no label per made-up name
    assert delta("sealkit_request_seconds_count", task="words", endpoint="classify") == 1
    assert delta("sealkit_request_seconds_bucket", task="words", endpoint="classify", le="+Inf") == 1
    assert delta("sealkit_request_items_count", task="words", endpoint="classify") == 1
    assert delta("sealkit_request_items_sum", task="words", endpoint="classify") == 2
    assert delta("sealkit_backbone_rows_total") >= 2 and delta("sealkit_backbone_batches_total") >= 1
    assert after[("sealkit_queue_depth", ())] == 0
    assert after[("sealkit_tasks", ())] == 1


def test_health_names_the_execution_providers(client):
    assert client.get("/health").json()["providers"] == ["CPUExecutionProvider"]
