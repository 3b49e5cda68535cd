"""The quality benchmark runs end to end on a tiny budget (the real runs are in docs/results.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quality_benchmark_smoke_runs_every_method_on_a_real_backbone(tmp_path):
    out = tmp_path / "quality.json"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--smoke", "--quiet",
        "--tasks", "mnist", "--methods", "zero-shot,output,dga,lga,lora,full",
        "--seal-dir", str(tmp_path / "seals"), "--out", str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads(out.read_text())["runs"]["mnist"]
    assert set(runs) == {"zero-shot", "output", "dga", "lga", "lora", "full"}
    for method, run in runs.items():
        assert 0.0 <= run["metrics"]["accuracy"] <= 1.0, method
        assert run["access"]
    # what each method trains and ships is ordered as the methods promise
    assert runs["output"]["trainable"] < runs["dga"]["trainable"] < runs["lga"]["trainable"] < runs["full"]["trainable"]
    assert runs["lga"]["ship_bytes"] < runs["full"]["ship_bytes"] / 10
    report = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "report_quality.py"), str(out), "--table", str(tmp_path / "t.md"),
         "--summary", str(tmp_path / "s.md"), "--chart", str(tmp_path / "q.png")],
        capture_output=True, text=True, timeout=300,
    )
    assert report.returncode == 0, report.stderr[-2000:]
    assert (tmp_path / "q.png").stat().st_size > 1000
    assert "| mnist (accuracy) |" in (tmp_path / "s.md").read_text()
