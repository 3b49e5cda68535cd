"""Issue 12, items 2, 3, 4 and 9 on the server: a locked admin API, uploads that cannot be redirected,
bad adapter files that never stop serving, bounded memory per request, and 4xx (never 500) for
hostile bodies. Responses never carry server paths or process ids; every request is logged once.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from polling import wait_for

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from sealkit.adapters.file import read_adapter_file, write_adapter_file
from sealkit.errors import ServeError
from sealkit.serve.errors import TooLargeError
from sealkit.serve.server import BackgroundServer, Deployment, ServeConfig, exposure_warnings
from sealkit.serve.service import Items, Limits

pytestmark = pytest.mark.usefixtures("torch_one_thread")
TIMEOUT = httpx.Timeout(30.0)


@pytest.fixture(scope="module")
def adapter(text_adapter) -> Path:
    return text_adapter


def method_key_edited(adapter: Path, folder: Path, name: str) -> Path:
    """The issue's repro: a one-byte change in the metadata (the "method" key)."""
    data = adapter.read_bytes()
    path = folder / f"{name}.adapter"
    path.write_bytes(data.replace(b'\\"method\\"', b'\\"methoe\\"'))
    return path


def task_key_dropped(adapter: Path, folder: Path, name: str) -> Path:
    """The same, by a tool that rewrites the checksum: the metadata has no "task"."""
    file = read_adapter_file(adapter)
    return write_adapter_file(folder / f"{name}.adapter", {k: v for k, v in file.meta.items() if k != "task"}, file.tensors)


def serve(text_seal, folder: Path, **config) -> BackgroundServer:
    settings = dict(poll_seconds=0.2, log_level="warning", max_wait_ms=1)
    settings.update(config)
    return BackgroundServer(Deployment(text_seal, folder, ServeConfig(**settings)).start())




# --- item 2: the admin API ---------------------------------------------------------------------------
def test_admin_is_refused_without_a_token(text_seal, adapter, tmp_path):
    with serve(text_seal, tmp_path) as server, httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        put = client.put("/admin/tasks/words", content=adapter.read_bytes())
        assert put.status_code == 403 and "SEALKIT_ADMIN_TOKEN" in put.json()["error"]
        assert client.post("/admin/reload").status_code == 403
        assert client.delete("/admin/tasks/words").status_code == 403
    assert list(tmp_path.iterdir()) == []


def test_admin_with_a_token_needs_the_token(text_seal, adapter, tmp_path):
    with serve(text_seal, tmp_path, admin_token="s3cret-token") as server, httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        assert client.put("/admin/tasks/words", content=adapter.read_bytes()).status_code == 401
        assert client.put("/admin/tasks/words", content=adapter.read_bytes(), headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert not (tmp_path / "words.adapter").exists()
        ok = client.put("/admin/tasks/words", content=adapter.read_bytes(), headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 201 and (tmp_path / "words.adapter").is_file()


def test_admin_without_a_token_needs_a_loopback_server_and_warnings_say_so():
    with pytest.raises(ServeError, match="--admin-without-token needs a loopback --host"):
        ServeConfig(host="0.0.0.0", admin_without_token=True).check()
    ServeConfig(host="127.0.0.1", admin_without_token=True).check()
    exposed = exposure_warnings(ServeConfig(host="0.0.0.0"))
    assert any("reachable from other machines" in w for w in exposed) and any("/admin API is disabled" in w for w in exposed)
    assert exposure_warnings(ServeConfig(host="127.0.0.1", admin_token="t")) == []


def test_an_upload_never_writes_through_a_planted_link_and_leaks_no_internals(text_seal, adapter, tmp_path):
    folder, outside = tmp_path / "adapters", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("precious")
    (folder / "words.adapter").symlink_to(victim)  # the final name is a link out of the folder
    for n in range(64):  # and the old predictable temp names too
        (folder / f".words.upload-{os.getpid()}-{n}").symlink_to(outside / f"t{n}")
    with serve(text_seal, folder, admin_without_token=True, poll_seconds=0) as server, httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        bad = client.put("/admin/tasks/broken", content=b"not an adapter at all")
        assert bad.status_code == 400
        for secret in (str(folder), str(tmp_path), str(os.getpid()), "upload-"):
            assert secret not in bad.text
        ok = client.put("/admin/tasks/words", content=adapter.read_bytes())
        assert ok.status_code == 201, ok.text
        assert client.post("/tasks/words/classify", json={"texts": ["a red cat"]}).status_code == 200
    assert victim.read_text() == "precious" and sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert not (folder / "words.adapter").is_symlink() and read_adapter_file(folder / "words.adapter").tensors
    assert not list(folder.glob("*.tmp")) and not (folder / "broken.adapter").exists()


# --- item 3: one bad file never stops serving ----------------------------------------------------------
def test_bad_adapters_never_stop_the_server_at_start_or_while_scanning(text_seal, adapter, tmp_path, caplog):
    shutil.copy(adapter, tmp_path / "words.adapter")
    method_key_edited(adapter, tmp_path, "edited")
    task_key_dropped(adapter, tmp_path, "dropped")
    with serve(text_seal, tmp_path, admin_token="t") as server, httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        listing = client.get("/tasks").json()
        assert [t["name"] for t in listing["tasks"]] == ["words"]
        assert set(listing["refused"]) == {"edited.adapter", "dropped.adapter"}
        assert "metadata does not match the checksum" in listing["refused"]["edited.adapter"]
        assert "has no valid 'task'" in listing["refused"]["dropped.adapter"]
        assert not any(str(tmp_path) in reason for reason in listing["refused"].values())

        task_key_dropped(adapter, tmp_path, "while-running")  # appears while serving
        shutil.copy(adapter, tmp_path / "later.adapter")  # a good file after it must still load
        wait_for(lambda: "later" in [t["name"] for t in client.get("/tasks").json()["tasks"]])
        assert "while-running.adapter" in client.get("/tasks").json()["refused"]
        (tmp_path / "words.adapter").unlink()  # and a deleted one must stop serving
        wait_for(lambda: client.post("/tasks/words/classify", json={"texts": ["red"]}).status_code == 404)
        reload = client.post("/admin/reload", headers={"Authorization": "Bearer t"})
        assert reload.status_code == 200 and reload.json()["tasks"] == ["later"]
        assert client.post("/tasks/later/classify", json={"texts": ["a red cat"]}).status_code == 200
        assert client.get("/ready").status_code == 200


# --- items 4 and 9: bodies ---------------------------------------------------------------------------
def _png(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_total_pixels_are_refused_from_the_headers_before_decoding(text_seal, tmp_path, monkeypatch):
    import sealkit.serve.service as service_module

    service = Deployment(text_seal, tmp_path, ServeConfig(limits=Limits(max_image_pixels=512 * 512, max_request_pixels=4 * 256 * 256))).service
    monkeypatch.setattr(service_module, "decode_image_bytes", lambda *a: pytest.fail("decoded before the pixel check"))
    service._check_pixels([_png(256)] * 4)  # at the limit
    with pytest.raises(TooLargeError, match="images have 327680 pixels together; the limit is 262144"):
        service._check_pixels([_png(256)] * 5)
    with pytest.raises(TooLargeError, match=r"images\[0\] is 1024x1024 pixels"):
        service._check_pixels([_png(1024)])
    with pytest.raises(TooLargeError, match="characters; the limit is"):
        service.check_items(Items("text", ["word " * 5000]))


@pytest.fixture(scope="module")
def text_server(text_seal, adapter, tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    shutil.copy(adapter, folder / "words.adapter")
    with serve(text_seal, folder, poll_seconds=0, log_level="info") as server:
        yield server


@pytest.mark.parametrize(
    "body, status, phrase",
    [
        ('{"texts": ["' + "word " * 5000 + '"]}', 413, "characters; the limit is"),
        ("[" * 100_000 + "]" * 100_000, 400, "nested too deeply"),
        ('{"texts": ' + "[" * 100_000 + "]" * 100_000 + "}", 400, "nested too deeply"),
        ('{"texts": ["\\ud800"]}', 400, "lone surrogate"),
        ('{"texts": ["a", "\\udfff b"]}', 400, "texts[1] is not valid Unicode"),
    ],
    ids=["long-text", "deep-list", "deep-field", "lone-surrogate", "low-surrogate"],
)
def test_hostile_bodies_get_a_4xx(text_server, body, status, phrase):
    with httpx.Client(base_url=text_server.url, timeout=TIMEOUT) as client:
        response = client.post("/tasks/words/classify", content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert phrase in response.json()["error"]


def test_every_request_is_logged_once_at_info(text_server, caplog):
    with caplog.at_level(logging.INFO, logger="sealkit.serve"), httpx.Client(base_url=text_server.url, timeout=TIMEOUT) as client:
        assert client.post("/tasks/words/classify", json={"texts": ["a red cat"]}).status_code == 200
        assert client.get("/tasks/nope").status_code == 404
        wait_for(lambda: sum("GET /tasks/nope 404" in r.getMessage() for r in caplog.records))
    lines = [r.getMessage() for r in caplog.records if r.name == "sealkit.serve"]
    assert sum(line.startswith("POST /tasks/words/classify 200 ") for line in lines) == 1
    assert sum(line.startswith("GET /tasks/nope 404 ") for line in lines) == 1
