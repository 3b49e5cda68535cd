"""`sealkit serve --engine ray`: the Ray Serve app on a local Ray cluster started here (2 CPUs).

One app for the module (Ray's start-up is the slow part): two backbone replicas, a tiny text seal,
three adapters (dga, lga, retrieval). Results through HTTP must equal the torch-free runtime's;
the API (routes, errors, OpenAPI schema) must be the single-process server's; requests of
different tasks must share backbone batches; adapters are picked up while it runs and another
seal's adapter is refused while the rest keep serving. Skipped where ray is not installed.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from polling import wait_for  # noqa: E402
from test_serve import BAD, COLOURS, OBJECTS, QUERIES, TIMEOUT, _train  # noqa: E402

from sealkit.adapters.file import read_adapter_file, write_adapter_file  # noqa: E402
from sealkit.adapters.functional import normalise  # noqa: E402
from sealkit.errors import ServeError  # noqa: E402
from sealkit.runtime.task import TaskRuntime  # noqa: E402
from sealkit.serve.service import Limits  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("words", "words-lga", "pairs")
MAX_QUEUE = 6
ADMIN_TOKEN = "ray-test-token"  # reaches the frontend replicas as their environment, as on a node


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_text_seal, key_bytes) -> dict[str, Path]:
    from sealkit.data.dataset import Dataset, Example

    folder = tmp_path_factory.mktemp("ray-trained")
    words = Dataset([Example(text=f"a {c} {o}", label=c) for c in COLOURS for o in OBJECTS], name="words")
    pairs = Dataset([Example(text=f"a photo of a {o}", text_b=f"the {OBJECTS[(i + 3) % len(OBJECTS)]}") for i, o in enumerate(OBJECTS)], name="pairs")
    return {
        "words": _train(tiny_text_seal, key_bytes, folder / "words.adapter", words, "dga", "classify"),
        "words-lga": _train(tiny_text_seal, key_bytes, folder / "words-lga.adapter", words, "lga", "classify"),
        "pairs": _train(tiny_text_seal, key_bytes, folder / "pairs.adapter", pairs, "output", "retrieve"),
    }


@pytest.fixture(scope="module")
def runtimes(text_seal, trained) -> dict[str, TaskRuntime]:
    return {name: TaskRuntime(text_seal, trained[name], name=name) for name in TASKS}


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory, tiny_text_seal, keys, trained):
    from ray import serve

    from sealkit.serve.ray_app import APP_NAME, build_app, free_port
    from sealkit.serve.server import ServeConfig

    folder = tmp_path_factory.mktemp("ray-adapters")
    for name in TASKS:
        shutil.copy(trained[name], folder / f"{name}.adapter")
    # the replicas import this checkout's sealkit, as the test does
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path, "SEALKIT_ADMIN_TOKEN": ADMIN_TOKEN}})
    try:
        port = free_port("127.0.0.1")
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        config = ServeConfig(max_batch=16, max_wait_ms=50, max_queue=MAX_QUEUE, limits=Limits(max_items=8, max_request_bytes=64 * 1024), poll_seconds=0.2)
        app = build_app(tiny_text_seal, folder, key=keys["key"], config=config, replicas=2, replica_cpus=0.5, threads=1)
        serve.run(app, name=APP_NAME, route_prefix="/")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
            client.folder = folder
            yield client
    finally:
        serve.shutdown()
        ray.shutdown()


def test_the_api_and_its_schema_are_those_of_sealkit_serve(ray_server, text_seal, tmp_path):
    from sealkit.serve.app import create_app
    from sealkit.serve.server import Deployment, ServeConfig

    body = ray_server.get("/tasks").json()
    assert [t["name"] for t in body["tasks"]] == sorted(TASKS) and body["refused"] == {}
    assert ray_server.get("/ready").json()["ready"] is True
    local = create_app(Deployment(text_seal, tmp_path, ServeConfig())).openapi()
    assert ray_server.get("/openapi.json").json() == local


@pytest.mark.parametrize("name", ["words", "words-lga"])
def test_classify_and_embed_equal_the_torch_free_runtime(ray_server, runtimes, name):
    runtime = runtimes[name]
    got = ray_server.post(f"/tasks/{name}/classify", json={"texts": QUERIES, "top_k": 2})
    assert got.status_code == 200, got.text
    for row, preds in zip(got.json()["results"], runtime.classify(QUERIES, "text", top_k=2)):
        assert [p["label"] for p in row["predictions"]] == [p.label for p in preds]
        np.testing.assert_allclose([p["probability"] for p in row["predictions"]], [p.score for p in preds], atol=1e-5)
    embedded = ray_server.post(f"/tasks/{name}/embed", json={"texts": QUERIES}).json()
    np.testing.assert_allclose(np.array(embedded["embeddings"]), runtime.embed(QUERIES, "text"), atol=1e-5)


def test_index_and_retrieve_rank_like_the_runtime(ray_server, runtimes):
    targets = [f"the {o}" for o in OBJECTS]
    ids = [f"t{i}" for i in range(len(targets))]
    assert ray_server.post("/tasks/pairs/index", json={"texts": targets, "ids": ids}).json() == {"task": "pairs", "added": len(ids), "size": len(ids)}
    queries = [f"a photo of a {o}" for o in OBJECTS[:4]]
    got = ray_server.post("/tasks/pairs/retrieve", json={"texts": queries, "top_k": 3})
    assert got.status_code == 200, got.text
    runtime = runtimes["pairs"]
    scores = normalise(runtime.embed(queries, "text")) @ normalise(runtime.embed(targets, "text")).T
    for row, result in zip(scores, got.json()["results"]):
        assert [m["id"] for m in result["matches"]] == [ids[j] for j in np.argsort(-row)[:3]]


def _burst(client, jobs: list[tuple[str, list[str]]], workers: int) -> list:
    def send(job):
        name, texts = job
        with httpx.Client(base_url=str(client.base_url), timeout=TIMEOUT) as c:
            return c.post(f"/tasks/{name}/embed", json={"texts": texts})

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(send, jobs))


def test_requests_of_different_tasks_share_backbone_batches_on_torch_free_replicas(ray_server, runtimes):
    jobs = [(("words", "pairs")[i % 2], [QUERIES[i % len(QUERIES)]]) for i in range(MAX_QUEUE - 1)]
    for _ in range(5):  # the first bursts may land while replicas are still busy with each other's work
        responses = _burst(ray_server, jobs, len(jobs))
        for (name, texts), response in zip(jobs, responses):
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(response.json()["embeddings"], runtimes[name].embed(texts, "text"), atol=1e-5)
        health = ray_server.get("/health").json()
        if health["batcher"]["max_tasks_in_batch"] >= 2:
            break
    batcher = health["batcher"]
    assert batcher["engine"] == "ray" and batcher["max_tasks_in_batch"] >= 2, batcher
    assert batcher["batches"] < batcher["calls"]  # fewer backbone runs than requests
    replicas = batcher["replicas"]
    assert replicas and all(r["tower"] == "text" and not r["torch_imported"] for r in replicas), replicas
    assert health["frontend"]["torch_imported"] is False


def test_a_burst_over_the_queue_limit_gets_503_and_the_rest_are_served(ray_server):
    jobs = [("words", [QUERIES[i % len(QUERIES)]]) for i in range(4 * MAX_QUEUE)]
    for _ in range(5):
        statuses = [r.status_code for r in _burst(ray_server, jobs, len(jobs))]
        if 503 in statuses:
            break
    assert 503 in statuses and 200 in statuses and set(statuses) <= {200, 503}, statuses
    assert ray_server.post("/tasks/words/embed", json={"texts": ["red"]}).status_code == 200  # the queue drains


@pytest.mark.parametrize("name, op, request_kwargs, status, message", BAD, ids=[f"{b[3]}-{b[4][:24]}" for b in BAD])
def test_a_malformed_or_oversized_request_gets_the_same_4xx_json_error(ray_server, name, op, request_kwargs, status, message):
    response = ray_server.post(f"/tasks/{name}/{op}", **request_kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"], response.json()


def _names(client) -> set[str]:
    return {t["name"] for t in client.get("/tasks").json()["tasks"]}


def test_an_adapter_added_while_running_is_served_and_another_seals_is_refused(ray_server, trained, tmp_path):
    folder = ray_server.folder
    shutil.copy(trained["words"], folder / "words-copy.adapter")
    wait_for(lambda: "words-copy" in _names(ray_server))
    copy = ray_server.post("/tasks/words-copy/classify", json={"texts": ["a red cat"]}).json()
    assert copy == {**ray_server.post("/tasks/words/classify", json={"texts": ["a red cat"]}).json(), "task": "words-copy"}

    other = read_adapter_file(trained["words"])  # the same adapter, as if trained for another seal
    write_adapter_file(tmp_path / "alien.adapter", {**other.meta, "seal_id": "0" * 32}, other.tensors)
    shutil.copy(tmp_path / "alien.adapter", folder / "alien.adapter")
    refused = wait_for(lambda: ray_server.get("/tasks").json()["refused"].get("alien.adapter", "").count("was trained for seal") and ray_server.get("/tasks").json()["refused"]["alien.adapter"])
    assert "not for this seal" in refused and "alien" not in _names(ray_server)
    assert ray_server.post("/tasks/words/classify", json={"texts": ["red"]}).status_code == 200

    (folder / "words-copy.adapter").unlink()
    wait_for(lambda: "words-copy" not in _names(ray_server))
    assert ray_server.post("/tasks/words-copy/classify", json={"texts": ["red"]}).status_code == 404

    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    assert ray_server.put("/admin/tasks/alien2", content=(tmp_path / "alien.adapter").read_bytes()).status_code == 401
    uploaded = ray_server.put("/admin/tasks/alien2", content=(tmp_path / "alien.adapter").read_bytes(), headers=admin)
    assert uploaded.status_code == 409 and "was trained for seal" in uploaded.json()["error"]
    assert not (folder / "alien2.adapter").exists()


def test_the_cli_refuses_engine_options_it_cannot_use(tiny_text_seal, keys, tmp_path):
    from typer.testing import CliRunner

    from sealkit.cli import app

    base = ["serve", str(tiny_text_seal), "--adapters", str(tmp_path), "--key", str(keys["key"])]
    for extra, message in [
        (["--replicas", "2"], "apply to --engine ray"),
        (["--engine", "triton"], "--engine must be local or ray"),
        (["--engine", "ray", "--replicas", "3-1"], "MIN <= MAX"),
        (["--engine", "ray", "--replicas", "two"], "a number N or bounds MIN-MAX"),
    ]:
        result = CliRunner().invoke(app, [*base, *extra])
        assert isinstance(result.exception, ServeError) and message in str(result.exception), (extra, result.exception)
