"""`sealkit serve`: a real uvicorn server on a loopback port, real HTTP requests (httpx).

Results must equal the torch-free runtime's (TaskRuntime, `sealkit predict`) for the same inputs,
also when requests of different tasks and text lengths share one backbone batch. Bad requests get a
4xx JSON error, adapters can be added while the server runs, and an adapter for another seal is
refused while the rest keep serving. Adapters are trained for a few steps on synthetic data first.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from polling import wait_for

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")  # the serve extra: pip install 'sealkit[serve]'
pytest.importorskip("uvicorn")

from sealkit.adapters.file import read_adapter_file, write_adapter_file
from sealkit.adapters.functional import normalise
from sealkit.runtime.seal import open_seal
from sealkit.runtime.task import TaskRuntime
from sealkit.serve.batcher import BackboneCall, Batcher
from sealkit.serve.errors import QueueFullError
from sealkit.serve.server import BackgroundServer, Deployment, ServeConfig
from sealkit.serve.service import Limits

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 50, 220), "yellow": (230, 220, 30)}
OBJECTS = ["cat", "dog", "bird", "car", "ship", "horse", "frog", "shoe"]
QUERIES = ["a red cat", "the big blue ship is very fresh", "green", "a small yellow frog with a bag", "a dog"]
TIMEOUT = httpx.Timeout(30.0)


def png(rgb, size: int = 32, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.asarray(rgb, np.float32) + rng.normal(0, 15, (size, size, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _train(seal_path, key_bytes, out: Path, dataset, method: str, task: str, **adapter) -> Path:
    from sealkit.adapters.config import AdapterConfig
    from sealkit.train.api import adapt
    from sealkit.train.loop import TrainConfig

    seal = open_seal(seal_path, key=key_bytes)
    config = AdapterConfig(method=method, output_hidden=16, **adapter)
    adapt(seal, dataset, dataset, out, method=method, task=task, config=TrainConfig(steps=6, batch=16, eval_every=6), adapter_config=config, progress=False, zero_shot=False)
    return out


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_text_seal, tiny_image_seal, key_bytes) -> dict[str, Path]:
    """Text-seal adapters (dga, dga with prompt tokens, lga, text-text retrieval) and one image-seal adapter."""
    from sealkit.data.dataset import Dataset, Example

    folder = tmp_path_factory.mktemp("trained")
    words = Dataset([Example(text=f"a {c} {o}", label=c) for c in COLOURS for o in OBJECTS], name="words")
    pairs = Dataset([Example(text=f"a photo of a {o}", text_b=f"the {OBJECTS[(i + 3) % len(OBJECTS)]}") for i, o in enumerate(OBJECTS)], name="pairs")
    rng = np.random.default_rng(0)
    colours = Dataset(
        [Example(image=np.clip(np.asarray(rgb) + rng.normal(0, 15, (32, 32, 3)), 0, 255).astype(np.uint8), label=c) for c, rgb in COLOURS.items() for _ in range(6)],
        name="colours",
    )
    return {
        "words": _train(tiny_text_seal, key_bytes, folder / "words.adapter", words, "dga", "classify"),
        "words-prompts": _train(tiny_text_seal, key_bytes, folder / "words-prompts.adapter", words, "dga", "classify", text_prompts=3),
        "words-lga": _train(tiny_text_seal, key_bytes, folder / "words-lga.adapter", words, "lga", "classify"),
        "pairs": _train(tiny_text_seal, key_bytes, folder / "pairs.adapter", pairs, "output", "retrieve"),
        "colours": _train(tiny_image_seal, key_bytes, folder / "colours.adapter", colours, "dga", "classify"),
    }


@pytest.fixture(scope="module")
def runtimes(text_seal, adapters) -> dict[str, TaskRuntime]:
    """The reference: each task on the plain torch-free runtime, one request at a time."""
    return {name: TaskRuntime(text_seal, adapters[name], name=name) for name in ("words", "words-prompts", "words-lga", "pairs")}


LIMITS = Limits(max_items=8, max_request_bytes=64 * 1024)


@pytest.fixture(scope="module")
def text_server(tmp_path_factory, text_seal, adapters):
    folder = tmp_path_factory.mktemp("adapters")
    for name in ("words", "words-prompts", "words-lga", "pairs"):
        shutil.copy(adapters[name], folder / f"{name}.adapter")
    config = ServeConfig(max_batch=16, max_wait_ms=20, max_queue=64, limits=LIMITS, poll_seconds=0.2, log_level="warning", admin_without_token=True)
    deployment = Deployment(text_seal, folder, config).start()
    with BackgroundServer(deployment) as server:
        server.folder = folder
        yield server


@pytest.fixture(scope="module")
def client(text_server):
    with httpx.Client(base_url=text_server.url, timeout=TIMEOUT) as c:
        yield c


@pytest.fixture(scope="module")
def image_server(tmp_path_factory, tiny_image_seal, key_bytes, adapters):
    folder = tmp_path_factory.mktemp("image-adapters")
    shutil.copy(adapters["colours"], folder / "colours.adapter")
    deployment = Deployment(open_seal(tiny_image_seal, key=key_bytes), folder, ServeConfig(limits=Limits(max_image_pixels=512 * 512), poll_seconds=0, log_level="warning")).start()
    with BackgroundServer(deployment) as server:
        yield server




# --- results --------------------------------------------------------------------------------------


def test_tasks_lists_every_adapter_with_its_type_method_modality_and_classes(client):
    body = client.get("/tasks").json()
    tasks = {t["name"]: t for t in body["tasks"]}
    assert set(tasks) == {"words", "words-prompts", "words-lga", "pairs"}
    assert tasks["words"]["task"] == "classify" and tasks["words"]["method"] == "dga" and tasks["words"]["modality"] == "text"
    assert tasks["words"]["classes"] == sorted(COLOURS)
    assert tasks["words-lga"]["method"] == "lga" and tasks["words-lga"]["entries"] is True
    assert tasks["pairs"]["task"] == "retrieve" and tasks["pairs"]["classes"] == []
    assert body["refused"] == {}
    assert client.get("/tasks/pairs").json()["name"] == "pairs"
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").json()["ready"] is True
    schema = client.get("/openapi.json").json()
    assert {"/tasks", "/tasks/{name}/classify", "/tasks/{name}/retrieve", "/admin/reload"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/tasks/{name}/classify"]["post"]["requestBody"]["content"]


@pytest.mark.parametrize("name", ["words", "words-prompts", "words-lga"])
def test_classify_and_embed_equal_the_torch_free_runtime(client, runtimes, name):
    runtime = runtimes[name]
    got = client.post(f"/tasks/{name}/classify", json={"texts": QUERIES, "top_k": 2})
    assert got.status_code == 200, got.text
    want = runtime.classify(QUERIES, "text", top_k=2)
    for row, preds in zip(got.json()["results"], want):
        assert [p["label"] for p in row["predictions"]] == [p.label for p in preds]
        np.testing.assert_allclose([p["probability"] for p in row["predictions"]], [p.score for p in preds], atol=1e-5)
    embedded = client.post(f"/tasks/{name}/embed", json={"texts": QUERIES}).json()
    np.testing.assert_allclose(np.array(embedded["embeddings"]), runtime.embed(QUERIES, "text"), atol=1e-5)


def test_classify_equals_sealkit_predict(client, tiny_text_seal, keys, adapters):
    from typer.testing import CliRunner

    from sealkit.cli import app

    result = CliRunner().invoke(app, ["predict", str(tiny_text_seal), *QUERIES[:3], "--adapter", str(adapters["words"]), "--key", str(keys["key"]), "--top-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    predicted = json.loads(result.output)["results"]
    served = client.post("/tasks/words/classify", json={"texts": QUERIES[:3], "top_k": 3}).json()["results"]
    for cli, http in zip(predicted, served):
        assert [p["label"] for p in cli["predictions"]] == [p["label"] for p in http["predictions"]]
        np.testing.assert_allclose([p["probability"] for p in cli["predictions"]], [p["probability"] for p in http["predictions"]], atol=1e-4)


def test_index_and_retrieve_rank_like_the_runtime(client, runtimes):
    targets = [f"the {o}" for o in OBJECTS]
    ids = [f"t{i}" for i in range(len(targets))]
    client.delete("/tasks/pairs/index")
    added = client.post("/tasks/pairs/index", json={"texts": targets, "ids": ids})
    assert added.status_code == 200, added.text
    assert added.json() == {"task": "pairs", "added": len(ids), "size": len(ids)}
    assert client.post("/tasks/pairs/index", json={"texts": targets[:2], "ids": ids[:2]}).json()["size"] == len(ids)  # same ids: replaced
    queries = [f"a photo of a {o}" for o in OBJECTS[:4]]
    got = client.post("/tasks/pairs/retrieve", json={"texts": queries, "top_k": 3})
    assert got.status_code == 200, got.text
    runtime = runtimes["pairs"]
    scores = normalise(runtime.embed(queries, "text")) @ normalise(runtime.embed(targets, "text")).T
    for row, result in zip(scores, got.json()["results"]):
        order = np.argsort(-row)[:3]
        assert [m["id"] for m in result["matches"]] == [ids[j] for j in order]
        np.testing.assert_allclose([m["score"] for m in result["matches"]], row[order], atol=1e-5)


def test_image_inputs_as_base64_json_and_as_multipart_files_equal_the_runtime(image_server, tiny_image_seal, key_bytes, adapters):
    runtime = TaskRuntime(open_seal(tiny_image_seal, key=key_bytes), adapters["colours"])
    images = [png(rgb, seed=i) for i, rgb in enumerate(COLOURS.values())]
    want = runtime.classify([Image.open(io.BytesIO(d)) for d in images], "image", top_k=2)
    with httpx.Client(base_url=image_server.url, timeout=TIMEOUT) as c:
        as_json = c.post("/tasks/colours/classify", json={"images": [b64(d) for d in images], "top_k": 2})
        as_form = c.post("/tasks/colours/classify", files=[("images", (f"{i}.png", d, "image/png")) for i, d in enumerate(images)], data={"top_k": "2"})
        data_url = c.post("/tasks/colours/embed", json={"images": ["data:image/png;base64," + b64(images[0])]})
        garbage = c.post("/tasks/colours/classify", json={"images": [b64(b"definitely not a png")]})
        huge = io.BytesIO()
        Image.new("RGB", (2000, 2000)).save(huge, "PNG")  # small file, too many pixels
        too_big = c.post("/tasks/colours/classify", files=[("images", ("huge.png", huge.getvalue(), "image/png"))])
        texts = c.post("/tasks/colours/classify", json={"texts": ["red"]})
    for response in (as_json, as_form):
        assert response.status_code == 200, response.text
        for row, preds in zip(response.json()["results"], want):
            assert [p["label"] for p in row["predictions"]] == [p.label for p in preds]
            np.testing.assert_allclose([p["probability"] for p in row["predictions"]], [p.score for p in preds], atol=1e-5)
    np.testing.assert_allclose(data_url.json()["embeddings"][0], runtime.embed([Image.open(io.BytesIO(images[0]))], "image")[0], atol=1e-5)
    assert garbage.status_code == 400 and "images[0]: not a readable image" in garbage.json()["error"]
    assert too_big.status_code == 413 and "2000x2000" in too_big.json()["error"]
    assert texts.status_code == 400 and "classifies images" in texts.json()["error"]


# --- batching -------------------------------------------------------------------------------------


def _call(runtime: TaskRuntime, texts: list[str], owner) -> BackboneCall:
    from sealkit.runtime.inputs import tower_inputs

    tower = runtime.seal.tower("text")
    feeds = runtime.adapt_inputs("text", tower_inputs(tower, texts)).feeds(tower)
    entries = runtime.entries("text")
    return BackboneCall(tower, feeds, entries, owner=owner if entries else None)


def test_batched_texts_of_different_lengths_and_tasks_equal_unbatched(runtimes):
    """Requests of three tasks with different text lengths (and prompt tokens) share one padded call;
    the lga task's requests (own entry tensors) share a call only with each other."""
    requests = [("words", ["red"]), ("words-prompts", ["a small yellow frog with a bag and a dog"]), ("pairs", QUERIES[:3]), ("words", QUERIES[3:])]
    requests += [("words-lga", ["blue"]), ("words-lga", ["the big blue ship is very fresh", "a cat"])]
    calls = [_call(runtimes[name], texts, owner=name) for name, texts in requests]
    lengths = {c.feeds["attention_mask"].shape[1] for c in calls}
    assert len(lengths) >= 3, lengths  # the padding really is exercised
    want = [c.tower.forward(c.feeds, c.entries) for c in calls]

    batcher = Batcher(max_batch=64, max_wait_ms=1, max_queue=16)
    futures = [batcher.submit(c) for c in calls]  # queued before the worker starts: a deterministic grouping
    batcher.start()
    try:
        for future, expected in zip(futures, want):
            np.testing.assert_allclose(future.result(timeout=30), expected, atol=1e-5)
    finally:
        batcher.close()
    assert batcher.stats["batches"] == 2  # one plain call for 4 requests of 3 tasks, one entries call for words-lga
    assert batcher.stats["rows"] == sum(c.rows for c in calls)


def test_a_full_queue_is_refused_and_a_failing_request_does_not_fail_its_batch(runtimes):
    runtime = runtimes["words"]
    batcher = Batcher(max_batch=8, max_wait_ms=1, max_queue=3)
    good = [_call(runtime, ["red"], None), _call(runtime, ["blue cat"], None)]
    tower = good[0].tower
    bad = BackboneCall(tower, {"token_embeddings": np.zeros((1, 600, 64), np.float32), "attention_mask": np.ones((1, 600), np.int64)})  # longer than the model's 512 positions
    futures = [batcher.submit(good[0]), batcher.submit(bad), batcher.submit(good[1])]
    with pytest.raises(QueueFullError, match="queue is full"):
        batcher.submit(_call(runtime, ["green"], None))
    batcher.start()
    try:
        np.testing.assert_allclose(futures[0].result(timeout=30), tower.forward(good[0].feeds), atol=1e-5)
        np.testing.assert_allclose(futures[2].result(timeout=30), tower.forward(good[1].feeds), atol=1e-5)
        with pytest.raises(Exception, match="cannot run"):
            futures[1].result(timeout=30)
    finally:
        batcher.close()


def test_concurrent_requests_for_different_tasks_get_their_own_results(client, text_server, runtimes):
    rng = np.random.default_rng(0)
    jobs = []
    for i in range(32):
        name = ["words", "words-prompts", "words-lga", "pairs"][i % 4]
        texts = [QUERIES[j] for j in rng.choice(len(QUERIES), size=int(rng.integers(1, 4)), replace=False)]
        jobs.append((name, texts))
    expected = [runtimes[name].embed(texts, "text") for name, texts in jobs]
    before = text_server.deployment.batcher.snapshot()

    def send(job):
        name, texts = job
        response = client.post(f"/tasks/{name}/embed", json={"texts": texts})
        assert response.status_code == 200, response.text
        return np.array(response.json()["embeddings"])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, jobs))
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)
    after = text_server.deployment.batcher.snapshot()
    assert after["calls"] - before["calls"] == len(jobs)
    assert after["batches"] - before["batches"] <= len(jobs)


# --- bad requests ---------------------------------------------------------------------------------

BAD = [
    ("words", "classify", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ("words", "classify", {"json": ["red"]}, 400, "must be an object"),
    ("words", "classify", {"json": {"text": ["red"]}}, 400, "unknown field"),
    ("words", "classify", {"json": {}}, 400, "either 'texts' or 'images'"),
    ("words", "classify", {"json": {"texts": ["red"], "images": ["AAAA"]}}, 400, "not both"),
    ("words", "classify", {"json": {"texts": []}}, 400, "is empty"),
    ("words", "classify", {"json": {"texts": "red"}}, 400, "must be a list"),
    ("words", "classify", {"json": {"texts": [3]}}, 400, "must be a string"),
    ("words", "classify", {"json": {"texts": ["  "]}}, 400, "empty"),
    ("words", "classify", {"json": {"texts": ["red"], "top_k": "two"}}, 400, "top_k"),
    ("words", "classify", {"json": {"texts": ["red"], "top_k": 0}}, 400, "top_k"),
    ("words", "classify", {"json": {"images": ["%%%not base64%%%"]}}, 400, "not valid base64"),
    ("words", "classify", {"json": {"images": [b64(png((1, 2, 3)))]}}, 400, "classifies texts, not images"),
    ("words", "embed", {"json": {"images": [b64(png((1, 2, 3)))]}}, 400, "takes no image inputs"),
    ("words", "classify", {"content": b"texts=red", "headers": {"content-type": "text/plain"}}, 415, "not supported"),
    ("words", "classify", {"json": {"texts": ["red"] * 9}}, 413, "limit is 8"),
    ("words", "classify", {"json": {"texts": ["red " * 20000]}}, 413, "limit is 65536"),
    ("pairs", "classify", {"json": {"texts": ["red"]}}, 400, "retrieve task"),
    ("words", "index", {"json": {"texts": ["red", "blue"], "ids": ["a"]}}, 400, "1 ids for 2 items"),
    ("words", "index", {"json": {"texts": ["red"]}}, 400, "'ids' is required"),
    ("words", "retrieve", {"json": {"texts": ["red"]}}, 409, "empty index"),
    ("nope", "classify", {"json": {"texts": ["red"]}}, 404, "no task named 'nope'"),
]


@pytest.mark.parametrize("name, op, request_kwargs, status, message", BAD, ids=[f"{b[3]}-{b[4][:24]}" for b in BAD])
def test_a_malformed_or_oversized_request_gets_a_4xx_json_error(client, name, op, request_kwargs, status, message):
    response = client.post(f"/tasks/{name}/{op}", **request_kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert message in response.json()["error"], response.json()
    assert "Traceback" not in response.text


def test_unknown_routes_and_methods_are_json_errors_too(client):
    assert client.get("/nothing/here").json() == {"error": "Not Found"}
    assert client.get("/tasks/words/classify").status_code == 405
    assert "error" in client.get("/tasks/words/classify").json()


def test_a_full_queue_is_503_over_http_and_not_ready(tiny_text_seal, key_bytes, adapters, tmp_path, runtimes):
    from starlette.testclient import TestClient

    from sealkit.serve.app import create_app

    shutil.copy(adapters["words"], tmp_path / "words.adapter")
    deployment = Deployment(open_seal(tiny_text_seal, key=key_bytes), tmp_path, ServeConfig(max_queue=1, poll_seconds=0))
    deployment.registry.scan()
    deployment.ready = True  # the batcher's worker is not started, so a queued call stays queued
    deployment.batcher.submit(_call(runtimes["words"], ["red"], None))
    with TestClient(create_app(deployment)) as c:
        response = c.post("/tasks/words/classify", json={"texts": ["red"]})
        assert response.status_code == 503 and "queue is full" in response.json()["error"]
        assert response.headers["retry-after"] == "1"
        assert c.get("/ready").status_code == 503
    deployment.stop()


# --- hot reload and refused adapters --------------------------------------------------------------


def _names(client) -> set[str]:
    return {t["name"] for t in client.get("/tasks").json()["tasks"]}


def test_adapters_are_hot_added_removed_and_another_seals_adapter_is_refused(client, text_server, adapters, runtimes):
    folder = text_server.folder
    shutil.copy(adapters["words"], folder / "words-copy.adapter")
    wait_for(lambda: "words-copy" in _names(client))
    copy = client.post("/tasks/words-copy/classify", json={"texts": ["a red cat"]}).json()
    assert copy == {**client.post("/tasks/words/classify", json={"texts": ["a red cat"]}).json(), "task": "words-copy"}

    shutil.copy(adapters["colours"], folder / "alien.adapter")  # trained on the image seal
    # (a scan may catch the copy half-written and refuse it as corrupt first; it is retried once it changes)
    refused = wait_for(lambda: "was trained for seal" in client.get("/tasks").json()["refused"].get("alien.adapter", "") and client.get("/tasks").json()["refused"]["alien.adapter"])
    assert "not for this seal" in refused
    assert "alien" not in _names(client)
    assert client.post("/tasks/words/classify", json={"texts": ["red"]}).status_code == 200  # still serving

    (folder / "words-copy.adapter").unlink()
    wait_for(lambda: "words-copy" not in _names(client))
    assert client.post("/tasks/words-copy/classify", json={"texts": ["red"]}).status_code == 404
    (folder / "alien.adapter").unlink()
    wait_for(lambda: not client.get("/tasks").json()["refused"])


def test_admin_add_remove_and_reload(client, text_server, adapters):
    folder = text_server.folder
    alien = client.put("/admin/tasks/alien", content=adapters["colours"].read_bytes())
    assert alien.status_code == 409 and "was trained for seal" in alien.json()["error"]
    assert not (folder / "alien.adapter").exists() and not list(folder.glob(".alien*"))
    corrupt = client.put("/admin/tasks/broken", content=b"not an adapter")
    assert corrupt.status_code == 400 and "not a valid sealkit adapter" in corrupt.json()["error"]
    assert client.put("/admin/tasks/bad name!", content=b"x").status_code in (400, 404)

    added = client.put("/admin/tasks/uploaded", content=adapters["words"].read_bytes())
    assert added.status_code == 201, added.text
    assert added.json()["name"] == "uploaded" and (folder / "uploaded.adapter").is_file()
    assert client.post("/tasks/uploaded/classify", json={"texts": ["red"]}).status_code == 200

    removed = client.delete("/admin/tasks/uploaded")
    assert removed.json() == {"removed": "uploaded", "file": "uploaded.adapter.removed"}
    assert "uploaded" not in _names(client)
    time.sleep(0.5)  # a poll later, the renamed file is still not loaded
    assert "uploaded" not in _names(client)
    assert client.delete("/admin/tasks/uploaded").status_code == 404

    # an index is dropped when its task's adapter changes: its embeddings came from the old version
    client.post("/tasks/words/index", json={"texts": ["red"], "ids": ["r"]})
    meta = read_adapter_file(folder / "words.adapter")
    write_adapter_file(folder / "words.adapter", {**meta.meta, "note": "retrained"}, meta.tensors)
    report = client.post("/admin/reload").json()  # (the folder poller may have reloaded it first)
    assert {"added", "updated", "removed", "refused"} <= set(report) and "words" in report["tasks"]
    wait_for(lambda: client.post("/tasks/words/retrieve", json={"texts": ["red"]}).status_code == 409)


def test_the_cli_serves_with_the_key_from_the_environment_and_needs_one(tmp_path, tiny_text_seal, keys, adapters):
    folder = tmp_path / "adapters"
    folder.mkdir()
    shutil.copy(adapters["words"], folder / "words.adapter")
    env = {k: v for k, v in os.environ.items() if k != "SEALKIT_KEY"}
    command = [sys.executable, "-m", "sealkit", "serve", str(tiny_text_seal), "--adapters", str(folder), "--port", "0", "--log-level", "warning"]
    missing = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert missing.returncode == 5 and "--key" in missing.stderr

    process = subprocess.Popen(command, env={**env, "SEALKIT_KEY": str(keys["key"]), "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: [lines.append(line) for line in process.stdout], daemon=True)
        reader.start()
        url = wait_for(lambda: next((line.split("serving on ")[1].split()[0] for line in lines if "serving on " in line), None), 60)
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=TIMEOUT) as c:
            assert [t["name"] for t in c.get("/tasks").json()["tasks"]] == ["words"]
            assert c.post("/tasks/words/classify", json={"texts": ["a red cat"]}).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=20)
