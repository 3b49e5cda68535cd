"""The quality benchmark runs end to end on a tiny budget, resumes, and reports intervals (the real
runs are in docs/results.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def quality(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "quality.py"),
        "--smoke",
        "--quiet",
        "--tasks",
        "mnist",
        "--seal-dir",
        str(tmp_path / "seals"),
        "--out",
        str(tmp_path / "quality.json"),
        *flags,
    ]
    # one torch thread: at these tiny sizes the runs are small operations, which two threads slow down on a shared machine
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)


@pytest.mark.slow
def test_quality_benchmark_smoke_runs_every_method_resumes_and_reports_intervals(tmp_path, efficientnet_seal):
    # The seal cache the benchmark keeps in --seal-dir, filled with the session's export of the same
    # recipe (32 px, light) instead of a second one; the benchmark must use it, not export again.
    _, seal, key = efficientnet_seal
    seals = tmp_path / "seals"
    seals.mkdir()
    (seals / "bench.key").write_text(key.hex() + "\n")
    shutil.copyfile(seal, seals / "effnet-32.seal")
    first = quality(tmp_path, "--methods", "zero-shot,output,dga,lga,lora,full", "--steps", "1", "--seeds", "0")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "exported" not in first.stdout
    runs = json.loads((tmp_path / "quality.json").read_text())["runs"]
    assert set(runs) == {f"mnist|{m}|1|0" for m in ("zero-shot", "output", "dga", "lga", "lora", "full")}
    for key, run in runs.items():
        assert 0.0 <= run["metrics"]["accuracy"] <= 1.0, key
        assert len(run["correct"]) == run["test_size"] == 16, key  # one outcome per test example, for paired intervals
        assert run["metrics"]["accuracy"] == pytest.approx(run["correct"].count("1") / 16), key
        assert run["access"]
    by_method = {run["method"]: run for run in runs.values()}
    assert by_method["zero-shot"]["note"].startswith("linear probe")  # MNIST has no zero-shot
    # what each method trains and ships is ordered as the methods promise
    assert by_method["output"]["trainable"] < by_method["dga"]["trainable"] < by_method["lga"]["trainable"] < by_method["full"]["trainable"]
    assert by_method["lga"]["ship_bytes"] < by_method["full"]["ship_bytes"] / 10

    # a second invocation with two budgets and two seeds runs only the keys it lacks
    second = quality(tmp_path, "--methods", "zero-shot,output", "--steps", "1,2", "--seeds", "0,1")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "6 runs to do" in second.stdout
    after = json.loads((tmp_path / "quality.json").read_text())["runs"]
    assert {k: after[k] for k in runs} == runs  # finished runs were kept as they were, not rerun
    assert {f"mnist|{m}|{n}|{s}" for m in ("zero-shot", "output") for n in (1, 2) for s in (0, 1)} <= set(after)

    # the same --out with another batch size is refused in one line, nothing lost
    other = quality(tmp_path, "--methods", "output", "--steps", "1", "--seeds", "0", "--batch", "8")
    assert other.returncode != 0 and "other settings" in other.stderr and "Traceback" not in other.stderr
    assert json.loads((tmp_path / "quality.json").read_text())["runs"] == after

    report = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "report_quality.py"), str(tmp_path / "quality.json"), "--table", str(tmp_path / "t.md"), "--chart", str(tmp_path / "q.png")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-2000:]
    assert (tmp_path / "q.png").stat().st_size > 1000
    table = (tmp_path / "t.md").read_text()
    # the summary row compares methods on the one seed they all have; zero-shot and output's own rows use both
    summary = next(line for line in table.splitlines() if line.startswith("| mnist | 1 |"))
    assert summary.startswith("| mnist | 1 | 0 * |") and "Means over the seeds every method of the row has" in table
    header = next(line for line in table.splitlines() if line.startswith("| task | steps | seeds |"))
    column = [c.strip() for c in header.split("|")].index("output")
    assert float(summary.split("|")[column]) == pytest.approx(runs["mnist|output|1|0"]["metrics"]["accuracy"], abs=5e-4)
    output_rows = [line for line in table.splitlines() if line.startswith("| output |")]
    assert len(output_rows) == 2  # one per budget
    for row in output_rows:
        cells = [c.strip() for c in row.split("|")]
        assert cells[5] == "0,1"  # both seeds
        t_low, t_high = (float(x) for x in cells[3].strip("[]").split(","))
        boot_low, boot_high = (float(x) for x in cells[4].strip("[]").split(","))
        mean = float(cells[2])
        assert t_low <= mean <= t_high and boot_low <= mean <= boot_high
    assert "white-box gain (full - baseline), points" in table


def _results_file(path: Path, method: str, correct: dict[int, str], val: float) -> str:
    runs = {f"mnist|{method}|150|{seed}": {"task": "mnist", "method": method, "steps": 150, "seed": seed, "correct": bits, "val_best": val} for seed, bits in correct.items()}
    path.write_text(json.dumps({"settings": {"train": 10}, "runs": runs}))
    return str(path)


def test_compare_variants_gives_paired_differences_on_common_seeds(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from compare_variants import main

    base = _results_file(tmp_path / "base.json", "lga[entries=residual]", {0: "1100", 1: "1010", 2: "0000"}, 0.5)
    variant = _results_file(tmp_path / "variant.json", "lga[entries=residual]", {0: "1110", 1: "1011"}, 0.75)
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare_variants.py"), "--task", "mnist", "--steps", "150", f"{base}:lga", f"{variant}:lga"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # seeds 0 and 1 only (the variant has no seed 2): 6/8 against 4/8
    assert "seeds [0, 1]" in result.stdout and "test 0.7500 - 0.5000 = +25.0 points" in result.stdout, result.stdout
    assert "validation 0.7500 vs 0.5000" in result.stdout
    with pytest.raises(SystemExit, match="no mnist runs at 150 steps match 'lora'"):
        main(["--task", "mnist", "--steps", "150", f"{base}:lora", f"{variant}:lga"])


def test_session_ab_times_every_setting_against_sealkits_own(tmp_path, keys, tiny_text_kinds_seal):
    """benchmarks/session_ab.py on a tiny text seal with residual graphs: 4 variants x 3 operations, ratios against the `auto` arena without spinning."""
    _, seal = tiny_text_kinds_seal
    key = keys["key"]
    out = tmp_path / "ab.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "session_ab.py"), str(seal), "--key", str(key), "--rounds", "2", "--warmup", "0", "--batch", "2", "--seq", "5", "--threads", "1", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["reference"] == "spinning off, arena on"  # text towers keep the arena by default
    rows = report["rows"]
    assert len(rows) == 12 and {r["operation"] for r in rows} == {"residual step", "recompute step", "vjp"}
    assert all(r["ratio"] == 1.0 for r in rows if r["variant"] == report["reference"])
    assert all(r["median_ms"] > 0 for r in rows)


def test_chunk_ab_times_the_towers_default_chunk_against_another(tmp_path, keys, tiny_text_kinds_seal):
    """benchmarks/chunk_ab.py on a tiny text seal with residual graphs: chunk 0 resolves to the text towers' 16 rows, ratios against the last chunk given."""
    _, seal = tiny_text_kinds_seal
    out = tmp_path / "chunks.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "chunk_ab.py"), str(seal), "--key", str(keys["key"]), "--chunks", "0,2", "--rounds", "2", "--warmup", "0", "--batch", "5", "--seq", "5", "--threads", "1", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert {k: r["resolved_chunk"] for k, r in report["results"].items()} == {"0": 16, "2": 2}
    assert report["results"]["2"]["ratio_to_last"] == 1.0 and report["results"]["0"]["median_ms"] > 0
    assert report["providers"] == ["CPUExecutionProvider"]


def test_matmul_floor_times_the_step_and_its_products(tmp_path):
    """benchmarks/matmul_floor.py at a tiny size: the torch step and the three product variants, as shares of the step."""
    out = tmp_path / "floor.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "matmul_floor.py"), "--batch", "2", "--seq", "8", "--threads", "1", "--rounds", "2", "--warmup", "1", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    rows = {r["what"]: r for r in report["rows"]}
    assert set(rows) == {"torch step", "products, torch", "products, onnxruntime, constant weights", "products, onnxruntime, weights as inputs"}
    assert rows["torch step"]["share_of_torch_step"] == 1.0
    assert all(r["median_ms"] > 0 for r in rows.values())
    # 6 layers x (12 linear products of 16 x 384 x {384, 1536} + 6 attention products of 8 x 8 x 32 per head)
    linear = 6 * 2 * 2 * 16 * (4 * 384 * 384 + 2 * 384 * 1536)
    heads = 6 * 6 * 2 * 2 * 12 * 8 * 8 * 32
    assert abs(report["gflop"] - (linear + heads) / 1e9) < 0.01


@pytest.mark.slow
def test_token_output_benchmark_runs_resumes_and_reports_shares(tmp_path):
    """benchmarks/token_output.py at a tiny size: each run lands as one line, a rerun skips it, the summary gives shares."""
    out = tmp_path / "token_output.jsonl"
    command = [sys.executable, str(ROOT / "benchmarks" / "token_output.py"), "--sizes", "12,8,8", "--steps", "2", "--evals", "1", "--batch", "4", "--seeds", "0"]
    command += ["--methods", "output-tokens,dga-tokens,full", "--threads", "1", "--out", str(out)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    runs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["method"] for r in runs] == ["output-tokens", "dga-tokens", "full"]
    assert all(0.0 <= r["test"] <= 1.0 and r["best_step"] in (0, 2) for r in runs)
    assert "zero-shot test" in first.stdout and "share of full's gain" in first.stdout
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert len(out.read_text().splitlines()) == 3  # nothing rerun
    assert '"method"' not in again.stdout
    # soft prompt tokens in dga's input adapter, at their own rate: recorded with the run
    prompted = tmp_path / "prompts.jsonl"
    command = [*command[: command.index("--methods")], "--methods", "dga-pooled", "--threads", "1", "--text-prompts", "2", "--prompt-lr", "1e-2", "--out", str(prompted)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (run,) = [json.loads(line) for line in prompted.read_text().splitlines()]
    assert (run["method"], run["text_prompts"], run["prompt_lr"]) == ("dga-pooled", 2, 1e-2)
    # another prompt setting in the same file is another run; the same one is skipped
    for rate, lines in (("1e-2", 1), ("3e-2", 2)):
        result = subprocess.run([*command[: command.index("--prompt-lr")], "--prompt-lr", rate, "--out", str(prompted)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert len(prompted.read_text().splitlines()) == lines


def test_token_layer_starts_as_the_pooled_output_adapter():
    """The token-level output adapter is the identity at start: before training it returns what pooling alone does."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from token_output import PooledOutput, TokenLayer

    torch.manual_seed(0)
    states, mask = torch.randn(3, 7, 384), torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    token_layer, pooled = TokenLayer(), PooledOutput()
    pooled.load_state_dict({k: v for k, v in token_layer.state_dict().items() if k.startswith("pooled.")})
    with torch.no_grad():
        torch.testing.assert_close(token_layer(states, mask), pooled(states, mask))
        # trained (here: random) weights: padding still never reaches the real tokens' result
        for parameter in token_layer.parameters():
            parameter.normal_(0.0, 0.1)
        noisy = states.clone()
        noisy[mask == 0] = 100.0
        torch.testing.assert_close(token_layer(noisy, mask), token_layer(states, mask))
