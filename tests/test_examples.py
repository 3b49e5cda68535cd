"""Every script in examples/ runs, at a tiny budget, as a user would run it (a fresh process each).

The device-side examples use the tiny image-text seal that conftest exports once per session; the
owner example exports its own small recipe (examples/my_recipe.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("SEALKIT_KEY", "SEALKIT_DEBUG")}
    return {**base, "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **extra}


def run(*command: object, timeout: float = 300, **extra: str) -> str:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env(**extra))
    assert result.returncode == 0, f"{command[:2]} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("examples")


@pytest.fixture(scope="module")
def adapters(out, tiny_pair_seal, keys) -> dict[str, str]:
    """Examples 02 (image folder, Python) and 03 (CSV, command line) write the adapters 04 serves."""
    image = run(sys.executable, EXAMPLES / "02_adapt_image_folder.py", "--seal", tiny_pair_seal, "--key", keys["key"], "--out", out / "colours.adapter", "--steps", 4)
    csv = run("bash", EXAMPLES / "03_adapt_csv.sh", tiny_pair_seal, keys["key"], 4, OUT=str(out))
    return {"image": image, "csv": csv}


def test_01_owner_export_of_a_custom_recipe(out):
    stdout = run(sys.executable, EXAMPLES / "01_owner_export.py", "--recipe", EXAMPLES / "my_recipe.py", "--out", out / "owner")
    assert (out / "owner" / "my_recipe.seal").is_file()
    assert "sealed 'my-small-convnet'" in stdout and "entry points ['ep0']" in stdout and "parity ok" in stdout


def test_02_adapt_on_an_image_folder(adapters, out):
    stdout = adapters["image"]
    assert "24 images, classes ['blue', 'green', 'red']" in stdout
    assert (out / "colours.adapter").is_file()
    assert len(re.findall(r"^(red|green|blue)/\d\.png: (red|green|blue) \(", stdout, re.M)) == 3


def test_03_adapt_on_a_csv_from_the_command_line(adapters, out):
    stdout = adapters["csv"]
    assert "using column 'text' as the text, column 'label' as the label" in stdout
    assert '"accuracy":' in stdout and (out / "reviews.adapter").is_file()
    assert "a great fun film" in stdout and "an awful boring plot" in stdout


def test_04_serve_several_tasks_and_05_call_the_http_api(adapters, out, tiny_pair_seal, keys):
    server = subprocess.Popen(
        ["bash", str(EXAMPLES / "04_serve_tasks.sh"), str(tiny_pair_seal), str(keys["key"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env(OUT=str(out), PORT="0"),
    )  # fmt: skip
    try:
        url = None
        for line in server.stdout:  # "serving on http://127.0.0.1:PORT (...)"
            found = re.search(r"serving on (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, server.stderr.read() if server.poll() is not None else "no URL printed"
        stdout = run(sys.executable, EXAMPLES / "05_http_client.py", "--url", url, "--image", EXAMPLES / "data" / "colours" / "red" / "0.png")
    finally:
        server.send_signal(signal.SIGTERM)  # the script exec's sealkit serve: this is its process
        server.wait(30)
    assert "health: ok providers ['CPUExecutionProvider'] tasks 2" in stdout
    assert "task colours: classify (output)" in stdout and "task reviews: classify (dga)" in stdout
    assert re.search(r"^0\.png: (red|green|blue)$", stdout, re.M)
    assert 'sealkit_requests_total{endpoint="classify",status="200",task="reviews"} 1.0' in stdout


def test_06_the_python_api(out, tiny_pair_seal, keys):
    stdout = run(sys.executable, EXAMPLES / "06_python_api.py", "--seal", tiny_pair_seal, "--key", keys["key"], "--verify-key", keys["sign_pub"], "--out", out / "api.adapter", "--steps", 4)
    assert "towers: {'image': 'image', 'text': 'text'}" in stdout
    assert re.search(r"held-out accuracy: [01]\.\d+", stdout) and "embedding shape: (1, " in stdout
