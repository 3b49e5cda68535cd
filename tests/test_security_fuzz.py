"""Issue 12 fuzz pass: seeded random mutations of seal files, adapter files and HTTP bodies.

Every case must end in success or a SealkitError (a one-line error at the CLI) for the readers, and
in a status below 500 for the server: never another exception, never a traceback. The cases are
seeded, so a failure names a reproducible case. SEALKIT_FUZZ_SCALE=10 runs ten times as many
(docs/security.md gives the counts run).
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_seal_security import join, reseal_id, split

from sealkit.adapters.file import read_adapter_file, write_adapter_file
from sealkit.errors import SealkitError
from sealkit.runtime.task import TaskRuntime
from sealkit.seal.container import read_seal

SCALE = int(os.environ.get("SEALKIT_FUZZ_SCALE", "1"))
pytestmark = pytest.mark.usefixtures("torch_one_thread")

ODD_VALUES = [None, True, False, 0, -1, 1, 2**63, -(2**70), 1.5, float("nan"), float("inf"), "", "zz", "\ud800", "a" * 300, [], {}, [1, "x"], {"a": None}, "../../etc/passwd"]


def odd_value(rng: random.Random):
    value = rng.choice(ODD_VALUES)
    return json.loads(json.dumps(value)) if isinstance(value, (list, dict)) else value


def mutate_json(obj, rng: random.Random, depth: int = 0):
    """A copy of `obj` with one randomly chosen node replaced, deleted, or given an extra key."""
    if isinstance(obj, dict) and obj and (depth > 6 or rng.random() < 0.8):
        key = rng.choice(sorted(obj))
        out = dict(obj)
        roll = rng.random()
        if roll < 0.2:
            del out[key]
        elif roll < 0.3:
            out[rng.choice(["extra", key + "_", ""])] = odd_value(rng)
        elif roll < 0.6 or not isinstance(obj[key], (dict, list)):
            out[key] = odd_value(rng) if rng.random() < 0.8 else mutate_json(obj[key], rng, depth + 1)
        else:
            out[key] = mutate_json(obj[key], rng, depth + 1)
        return out
    if isinstance(obj, list) and obj:
        out = list(obj)
        i = rng.randrange(len(out))
        roll = rng.random()
        if roll < 0.2:
            del out[i]
        elif roll < 0.3:
            out.append(odd_value(rng))
        else:
            out[i] = mutate_json(out[i], rng, depth + 1) if isinstance(out[i], (dict, list)) else odd_value(rng)
        return out
    return odd_value(rng)


def mutate_bytes(data: bytes, rng: random.Random, start: int = 0, end: int | None = None) -> bytes:
    end = len(data) if end is None else end
    out = bytearray(data)
    roll = rng.random()
    if roll < 0.5:
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
    elif roll < 0.7:
        return bytes(out[: rng.randrange(len(out))])
    elif roll < 0.85:
        at = rng.randrange(start, end)
        return bytes(out[:at] + os.urandom(rng.randint(1, 16)) + out[at:])
    else:
        at = rng.randrange(start, end)
        return bytes(out[:at] + out[at + rng.randint(1, 16) :])
    return bytes(out)


def test_fuzz_the_seal_reader(tiny_text_seal, key_bytes, tmp_path):
    original = tiny_text_seal.read_bytes()
    version, header, region = split(original)
    header_end = len(original) - len(region)
    rng = random.Random(12)
    path = tmp_path / "fuzzed.seal"
    outcomes = {"refused": 0, "opened": 0}
    for case in range(600 * SCALE):
        if case % 2:
            data = mutate_bytes(original, rng, 0, header_end + 64)  # the prefix, header and first blob bytes
        else:
            mutated = {**header, "manifest": mutate_json(header["manifest"], rng)}
            if isinstance(mutated["manifest"], dict) and rng.random() < 0.8:
                reseal_id(mutated["manifest"])  # as a forger would: only the key or signature can tell
            data = join(mutated, region, version)
        path.write_bytes(data)
        try:
            file = read_seal(path)
            for record in file.manifest.blobs:
                file.blob(record.name, key_bytes)
            outcomes["opened"] += 1
        except SealkitError as exc:
            assert "\n" not in str(exc), (case, str(exc))
            outcomes["refused"] += 1
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc}")
    assert outcomes["refused"] > 500 * SCALE  # the mutations really broke the file
    assert outcomes["opened"] < 100 * SCALE  # (mutations that kept it valid, e.g. of the producer name, with the id recomputed)


@pytest.fixture(scope="module")
def adapter(text_adapter) -> Path:
    return text_adapter


def mutate_tensors(tensors: dict, rng: random.Random) -> dict:
    out = dict(tensors)
    name = rng.choice(sorted(out))
    roll = rng.random()
    if roll < 0.25:
        del out[name]
    elif roll < 0.5:
        shape = list(out[name].shape) or [1]
        axis = rng.randrange(len(shape))
        shape[axis] = max(0, shape[axis] + rng.choice([-1, 1]))
        out[name] = np.zeros(shape, np.float32)
    elif roll < 0.65:
        out[name] = out[name].astype(rng.choice([np.int32, np.float64, np.float16, np.int8]))
    elif roll < 0.8:
        value = out[name].astype(np.float32).copy()
        value.reshape(-1)[rng.randrange(max(1, value.size))] = rng.choice([np.nan, np.inf, -np.inf]) if value.size else 0
        out[name] = value
    else:
        out[rng.choice(["towers.text.input.extra", "head.weight", "towers.other.output.proj.weight", "x"])] = np.zeros((2, 2), np.float32)
    return out


def test_fuzz_the_adapter_reader_and_runtime(adapter, text_seal, tmp_path):
    good = read_adapter_file(adapter)
    original = adapter.read_bytes()
    rng = random.Random(12)
    path = tmp_path / "fuzzed.adapter"
    outcomes = {"refused": 0, "loaded": 0}
    for case in range(900 * SCALE):
        kind = case % 3
        if kind == 0:
            path.write_bytes(mutate_bytes(original, rng))
        elif kind == 1:  # rewritten with valid checksums: only validation can refuse it
            meta = mutate_json(good.meta, rng)
            try:
                write_adapter_file(path, meta if isinstance(meta, dict) else {"x": meta}, good.tensors)
            except (TypeError, ValueError):
                continue  # not JSON-serialisable (NaN keys etc.): not a file anyone can write
        else:
            write_adapter_file(path, good.meta, mutate_tensors(good.tensors, rng))
        try:
            runtime = TaskRuntime(text_seal, read_adapter_file(path))
            if case % 9 == 0:  # running it is slower: a sample
                runtime.classify_embeddings(runtime.embed(["a red cat"], "text"), top_k=2)
            outcomes["loaded"] += 1
        except SealkitError as exc:
            assert "\n" not in str(exc), (case, str(exc))
            outcomes["refused"] += 1
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"case {case} ({['bytes', 'metadata', 'tensors'][kind]}): {type(exc).__name__}: {exc}")
    assert outcomes["refused"] > 300 * SCALE


def random_body(rng: random.Random) -> tuple[bytes, str]:
    roll = rng.random()
    if roll < 0.1:
        return os.urandom(rng.randint(0, 300)), rng.choice(["application/json", "", "text/plain", "multipart/form-data; boundary=x"])
    if roll < 0.2:
        depth = rng.choice([10, 1000, 50_000])
        return (("[" * depth) + ("]" * depth)).encode(), "application/json"
    body = {"texts": ["a red cat", "the blue ship"]} if rng.random() < 0.6 else {"images": [_PNG_B64]}
    for _ in range(rng.choice([0, 0, 1, 2, 3])):  # some valid bodies, so the model paths run too
        body = mutate_json(body, rng)
    if rng.random() < 0.3 and isinstance(body, dict):
        body[rng.choice(["top_k", "ids"])] = odd_value(rng)
    try:
        text = json.dumps(body, allow_nan=True)
    except (TypeError, ValueError):
        text = "{"
    return text.encode("utf-8", "surrogatepass"), "application/json"


def _png() -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


_PNG_B64 = _png()


def test_fuzz_http_bodies(text_seal, adapter, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from sealkit.serve.app import create_app
    from sealkit.serve.server import Deployment, ServeConfig

    shutil.copy(adapter, tmp_path / "words.adapter")
    deployment = Deployment(text_seal, tmp_path, ServeConfig(poll_seconds=0, max_wait_ms=0, log_level="warning")).start()
    rng = random.Random(12)
    statuses: dict[int, int] = {}
    try:
        with TestClient(create_app(deployment), raise_server_exceptions=False) as client:
            for case in range(700 * SCALE):
                body, content_type = random_body(rng)
                op = rng.choice(["embed", "classify", "index", "retrieve", "embed"])
                task = "words" if rng.random() < 0.9 else rng.choice(["nope", "..", "%00", "a" * 200])
                response = client.post(f"/tasks/{task}/{op}", content=body, headers={"content-type": content_type} if content_type else {})
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                assert response.status_code < 500, (case, body[:200], response.text)
                assert "Traceback" not in response.text and str(tmp_path) not in response.text
    finally:
        deployment.stop()
    assert statuses.get(200, 0) > 20 and sum(v for k, v in statuses.items() if 400 <= k < 500) > 300 * SCALE
