"""Deployment: many tasks on one backbone, torch-free, with adapters for other seals refused.

The no-torch check runs in a fresh interpreter through the harness in tests/no_torch.py (this test
process has torch loaded for training).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from no_torch import assert_ok, run_without_torch

from sealkit.adapters.file import read_adapter_file, write_adapter_file
from sealkit.errors import AdapterError, AdapterMismatchError
from sealkit.runtime.seal import open_seal
from sealkit.serve.errors import TaskNotFoundError
from sealkit.serve.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["a red cat", "the big blue ship", "green"]


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_text_seal, key_bytes) -> Path:
    """Three tasks (copies of one quickly trained adapter, under different names) on the tiny text seal."""
    from sealkit.data.dataset import Dataset, Example
    from sealkit.train.api import adapt
    from sealkit.train.loop import TrainConfig

    folder = tmp_path_factory.mktemp("deploy-adapters")
    words = Dataset([Example(text=f"a {c} {o}", label=c) for c in ("red", "green", "blue") for o in ("cat", "dog", "ship", "car")], name="words")
    seal = open_seal(tiny_text_seal, key=key_bytes)
    adapt(seal, words, words, folder / "words.adapter", method="output", task="classify", config=TrainConfig(steps=5, batch=12, eval_every=5), progress=False, zero_shot=False)
    (folder / "words.adapter.ckpt").unlink(missing_ok=True)
    for name in ("words-b", "words-c"):
        shutil.copy(folder / "words.adapter", folder / f"{name}.adapter")
    return folder


def alien_copy(source: Path, target: Path) -> Path:
    """The same adapter, bound to another seal id (as if trained on another seal)."""
    file = read_adapter_file(source)
    return write_adapter_file(target, {**file.meta, "seal_id": "0" * 32, "seal_name": "another-model"}, file.tensors)


def test_loading_tasks_predicting_and_serving_import_no_torch(tiny_text_seal, keys, adapter_dir, tmp_path):
    folder = tmp_path / "adapters"
    shutil.copytree(adapter_dir, folder)
    alien_copy(folder / "words.adapter", folder / "alien.adapter")
    body = """
        import contextlib, io, runpy
        seal_path, folder, key = sys.argv[1:4]

        from sealkit.runtime.seal import open_seal
        from sealkit.serve.registry import Registry
        seal = open_seal(seal_path, key=key)
        registry = Registry(seal, folder)
        report = registry.scan()
        assert sorted(report.added) == ["words", "words-b", "words-c"], report
        assert list(report.refused) == ["alien.adapter"], report
        print(registry.get("words-b").runtime.classify(["a red cat"], "text"))

        import sealkit.cli  # sealkit predict
        sys.argv = ["sealkit", "predict", seal_path, "a red cat", "--adapter", folder + "/words.adapter", "--key", key, "--json"]
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                sealkit.cli.main()
            except SystemExit as exc:
                assert not exc.code, exc.code
        assert '"predictions"' in out.getvalue()

        # the deploy example
        sys.argv = ["serve_tasks.py", seal_path, folder, "a red cat", "--key", key]
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                runpy.run_path("runtimes/python/serve_tasks.py", run_name="__main__")
            except SystemExit as exc:
                assert not exc.code, exc.code
        assert "3 task(s) on one backbone" in out.getvalue(), out.getvalue()

        # the HTTP server, with real requests
        import httpx
        from sealkit.cli import serve_command  # noqa: F401
        from sealkit.serve.server import BackgroundServer, Deployment, ServeConfig
        deployment = Deployment(seal, folder, ServeConfig(poll_seconds=0, log_level="warning")).start()
        with BackgroundServer(deployment) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post("/tasks/words-c/classify", json={"texts": ["a red cat"]}).status_code == 200
            assert client.get("/tasks").json()["refused"]["alien.adapter"]
            assert client.get("/openapi.json").status_code == 200
        """
    assert_ok(run_without_torch(body, str(tiny_text_seal), str(folder), str(keys["key"]), timeout=180))


def test_n_tasks_share_one_backbone_and_its_sessions(tiny_text_seal, key_bytes, adapter_dir):
    seal = open_seal(tiny_text_seal, key=key_bytes)
    tower = seal.tower("text")
    registry = Registry(seal, adapter_dir)
    registry.load(adapter_dir / "words.adapter")
    first = registry.get("words").runtime.classify(TEXTS, "text")
    sessions = dict(tower._graphs)
    assert set(sessions) == {"embed", "forward"}
    registry.scan()
    assert len(registry) == 3
    for task in registry.tasks():
        assert task.runtime.seal is seal
        got = task.runtime.classify(TEXTS, "text")
        assert [[p.label for p in row] for row in got] == [[p.label for p in row] for row in first]
    assert tower._graphs == sessions  # the same session objects: nothing was loaded per task


def test_another_seals_adapter_is_refused_with_a_clear_error_and_the_rest_keep_working(tiny_text_seal, key_bytes, adapter_dir, tmp_path):
    seal = open_seal(tiny_text_seal, key=key_bytes)
    registry = Registry(seal)
    registry.load(adapter_dir / "words.adapter")
    alien = alien_copy(adapter_dir / "words.adapter", tmp_path / "alien.adapter")
    with pytest.raises(AdapterMismatchError, match=r"alien.adapter was trained for seal 0{32} \(another-model\), not for this seal"):
        registry.load(alien)
    assert "alien" not in registry
    assert registry.get("words").runtime.classify(["red"], "text")


def test_load_unload_reload_and_scan(tiny_text_seal, key_bytes, adapter_dir, tmp_path):
    seal = open_seal(tiny_text_seal, key=key_bytes)
    folder = tmp_path / "adapters"
    folder.mkdir()
    registry = Registry(seal, folder)
    events = []
    registry.listeners.append(lambda event, task: events.append((event, task.name)))
    assert not registry.scan().changed

    shutil.copy(adapter_dir / "words.adapter", folder / "a.adapter")
    (folder / "broken.adapter").write_bytes(b"not an adapter")
    (folder / "notes.txt").write_text("ignored")
    report = registry.scan()
    assert report.added == ["a"] and list(report.refused) == ["broken.adapter"]
    assert "not a valid sealkit adapter" in registry.refused["broken.adapter"]
    assert not registry.scan().changed  # a refused file is not retried until it changes

    uid = registry.get("a").uid
    registry.reload("a")
    assert registry.get("a").uid != uid
    file = read_adapter_file(folder / "a.adapter")
    write_adapter_file(folder / "a.adapter", {**file.meta, "note": "v2"}, {k: v * 1.0 for k, v in file.tensors.items()})
    assert registry.scan().updated == ["a"]
    assert registry.get("a").runtime.meta["note"] == "v2"

    alien_copy(folder / "a.adapter", folder / "a.adapter")  # replaced by a bad version: the good one keeps serving
    report = registry.scan()
    assert "a.adapter" in report.refused and registry.get("a").runtime.meta["note"] == "v2"

    (folder / "a.adapter").unlink()
    (folder / "broken.adapter").unlink()
    assert registry.scan().removed == ["a"]
    assert not registry.refused
    with pytest.raises(TaskNotFoundError, match="no task named 'a'"):
        registry.get("a")
    with pytest.raises(TaskNotFoundError):
        registry.unload("a")
    assert [e[0] for e in events] == ["loaded", "updated", "updated", "unloaded"]

    with pytest.raises(AdapterError, match="not allowed"):
        registry.load(adapter_dir / "words.adapter", name="../escape")
    installed = registry.install("up", (adapter_dir / "words.adapter").read_bytes())
    assert installed.path == folder / "up.adapter"
    with pytest.raises(AdapterMismatchError):
        registry.install("alien", alien_copy(adapter_dir / "words.adapter", tmp_path / "x.adapter").read_bytes())
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "up.adapter"]
    assert registry.retire("up") == folder / "up.adapter.removed"
    assert not registry.scan().changed and "up" not in registry


def test_the_runtimes_example_prints_every_tasks_labels(tiny_text_seal, keys, adapter_dir):
    result = subprocess.run(
        [sys.executable, "runtimes/python/serve_tasks.py", str(tiny_text_seal), str(adapter_dir), "a red cat", "--key", str(keys["key"])],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines[:3]] == ["words", "words-b", "words-c"]
    assert lines[-1].startswith("3 task(s) on one backbone")
    missing_key = subprocess.run([sys.executable, "runtimes/python/serve_tasks.py", str(tiny_text_seal), str(adapter_dir), "x"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                                 env={"PATH": "/usr/bin", **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}})  # no SEALKIT_KEY; same sealkit
    assert missing_key.returncode == 5 and "encrypted" in missing_key.stderr
