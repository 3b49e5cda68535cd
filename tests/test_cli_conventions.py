"""The command line behaves as users of click/typer tools expect.

Dynamic strings (paths, texts, labels, error messages) are printed verbatim, never read as rich
markup; a core install without torch names the extra to install in one line; `eval --adapter`
runs on the torch-free runtime and matches the torch path's metrics.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from no_torch import assert_ok, run_without_torch
from synthetic import permuted_colour_texts, permuted_text_pairs

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SEALKIT = str(Path(sys.executable).with_name("sealkit"))
MARKUP_TEXTS = ["a [/i] film", "[red]great[/red] film", "data[v2] :smile:"]


def sealkit(*args: object, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    for name in ("SEALKIT_KEY", "SEALKIT_DEBUG", "COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    return subprocess.run([SEALKIT, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)


def write_table(dataset, path: Path, text_col: str = "text", label_col: str = "label", b_col: str = "target") -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        has_b = dataset.examples[0].text_b is not None
        writer.writerow([text_col, b_col if has_b else label_col])
        for e in dataset.examples:
            writer.writerow([e.text, e.text_b if has_b else e.label])
    return path


@pytest.fixture(scope="module")
def text_task(text_seal, tmp_path_factory) -> dict[str, Path]:
    """A text classifier (dga, a few steps) and a text-text retriever on the tiny text seal, with their test tables."""
    from sealkit.train.api import adapt
    from sealkit.train.loop import TrainConfig

    root = tmp_path_factory.mktemp("text-task")
    classify = root / "colours.adapter"
    adapt(text_seal, permuted_colour_texts(4, seed=1), None, classify, method="dga", task="classify",
          config=TrainConfig(steps=6, batch=8, lr=0.02, eval_every=6), progress=False, zero_shot=False)  # fmt: skip
    retrieve = root / "pairs.adapter"
    adapt(text_seal, permuted_text_pairs(12, seed=0), None, retrieve, method="dga", task="retrieve",
          config=TrainConfig(steps=6, batch=8, lr=0.02, eval_every=6), progress=False, zero_shot=False, recall_ks=(1, 3))  # fmt: skip
    return {
        "classify": classify,
        "retrieve": retrieve,
        "classify_data": write_table(permuted_colour_texts(3, seed=7), root / "test.csv"),
        "retrieve_data": write_table(permuted_text_pairs(12, seed=0), root / "pairs.csv"),
    }


# ----- 1. rich markup ---------------------------------------------------------------------------


def test_a_path_with_brackets_is_named_verbatim_in_the_error(tmp_path):
    result = sealkit("inspect", "data[v2].seal", cwd=tmp_path)
    assert result.returncode != 0
    assert "data[v2].seal" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_predict_prints_texts_that_look_like_markup_verbatim(tiny_text_seal, keys, text_task):
    result = sealkit("predict", tiny_text_seal, *MARKUP_TEXTS, "--adapter", text_task["classify"], "--key", keys["key"])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for text in MARKUP_TEXTS:
        assert text in result.stdout, (text, result.stdout)


def test_table_cells_and_messages_keep_brackets(tmp_path):
    """The printing helpers themselves: a table cell, a warning and an error line, all verbatim."""
    code = """
from rich.table import Table
from sealkit.cli.common import console, error_line, warn
table = Table(title="[bold]t[/bold]")
table.add_column("[i]col")
table.add_row("[red]great[/red] film")
console.print(table)
warn("skipped a [/i] film")
error_line("error:", "no seal at data[v2].seal")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for text in ("[bold]t[/bold]", "[i]col", "[red]great[/red] film", "skipped a [/i] film"):
        assert text in result.stdout, (text, result.stdout)
    assert "error: no seal at data[v2].seal" in result.stderr


# ----- 2. missing torch and the torch-free eval --------------------------------------------------

BLOCK = """
import sealkit.cli
blocked = sys.argv[1].split(",")
for name in blocked:
    sys.modules[name] = None  # as if not installed: `import name` raises ModuleNotFoundError
sys.argv = ["sealkit", *sys.argv[2:]]
try:
    sealkit.cli.main()
except SystemExit as exc:
    print("EXIT", exc.code)
for name in blocked:
    del sys.modules[name]  # the blocks, so the harness's check sees no torch
"""


@pytest.mark.parametrize(
    "command, blocked, extra",
    [
        (["adapt", "S", "--train", "x.csv", "--out", "o.adapter"], "torch", "sealkit[adapt]"),
        (["eval", "S", "--data", "x.csv"], "torch", "sealkit[adapt]"),
        (["export", "tests/recipes/tiny_vit.py", "--out", "o.seal", "--no-encrypt"], "torch", "sealkit[export]"),
        (["check", "S", "tests/recipes/tiny_vit.py"], "torch", "sealkit[export]"),
        (["serve", "S", "--adapters", "."], "fastapi,uvicorn", "sealkit[serve]"),
    ],
)
def test_a_missing_extra_is_named_in_one_line(command, blocked, extra):
    result = run_without_torch(BLOCK, blocked, *command)
    assert_ok(result)
    assert "EXIT 1" in result.stdout, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert f"pip install '{extra}'" in lines[0], lines[0]
    assert "internal error" not in result.stderr


@pytest.mark.parametrize("kind", ["classify", "retrieve"])
def test_eval_with_an_adapter_runs_without_torch_and_matches_the_torch_metrics(kind, text_seal, tiny_text_seal, keys, text_task, tmp_path):
    from sealkit.data import load_dataset
    from sealkit.train.api import evaluate

    columns = ["--text-col", "text", "--label-col", "label"] if kind == "classify" else ["--text-col", "text", "--text-b-col", "target"]
    out = tmp_path / "metrics.json"
    result = run_without_torch(
        BLOCK, "torch", "eval", str(tiny_text_seal), "--adapter", str(text_task[kind]), "--data", str(text_task[f"{kind}_data"]),
        *columns, "--key", str(keys["key"]), "--json-out", str(out),
    )  # fmt: skip
    assert_ok(result)
    assert "EXIT 0" in result.stdout, result.stderr
    cli_metrics = json.loads(out.read_text())["metrics"]

    data = load_dataset(str(text_task[f"{kind}_data"]), text_col="text", **({"label_col": "label"} if kind == "classify" else {"text_b_col": "target"}))
    torch_metrics = evaluate(text_seal, data, adapter=text_task[kind])
    assert set(cli_metrics) == set(torch_metrics)
    assert cli_metrics == pytest.approx(torch_metrics, abs=1e-9)
    if kind == "retrieve":
        assert "text->target R@3" in cli_metrics  # the adapter's own recall_ks, as recorded at training


# ----- 3. conventions ---------------------------------------------------------------------------


def test_version_and_completion_are_offered():
    from sealkit import __version__

    result = sealkit("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"sealkit {__version__}"
    help_text = sealkit("--help").stdout
    assert "--install-completion" in help_text and "--show-completion" in help_text


@pytest.mark.parametrize(
    "args, listed",
    [
        (["adapt", "missing.seal", "--train", "missing.csv", "--out", "o.adapter", "--method", "bogus"], "'output', 'dga', 'lga'"),
        (["adapt", "missing.seal", "--train", "missing.csv", "--out", "o.adapter", "--task", "bogus"], "'classify', 'retrieve'"),
        (["adapt", "missing.seal", "--train", "missing.csv", "--out", "o.adapter", "--training-arena", "bogus"], "'auto', 'on', 'off'"),
        (["eval", "missing.seal", "--data", "missing.csv", "--on-bad", "bogus"], "'skip', 'error'"),
        (["eval", "missing.seal", "--data", "missing.csv", "--head", "bogus"], "'text', 'linear'"),
        (["export", "missing.py", "--out", "o.seal", "--exposure", "bogus"], "'dark', 'light'"),
    ],
)
def test_a_bad_choice_is_a_usage_error_before_any_work(args, listed, tmp_path):
    """Exit 2 (click's usage error), naming the allowed values, although the seal and data do not exist."""
    result = sealkit(*args, cwd=tmp_path)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert listed in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_choices_are_listed_in_help():
    help_text = sealkit("adapt", "--help").stdout
    for listed in ("output|dga|lga", "classify|retrieve", "text|linear", "skip|error", "auto|on|off"):
        assert listed in help_text, listed


def test_an_internal_error_has_its_own_exit_code(tmp_path):
    code = """
import sys
import sealkit.seal.crypto
def broken(folder):
    raise RuntimeError("a bug [x]")
sealkit.seal.crypto.write_keys = broken
import sealkit.cli
sys.argv = ["sealkit", "keygen", "--out", sys.argv[1]]
sealkit.cli.main()
"""
    from sealkit.cli import INTERNAL_ERROR

    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60, env={**os.environ, "SEALKIT_DEBUG": ""})
    assert result.returncode == INTERNAL_ERROR == 70
    assert result.stderr.startswith("internal error: RuntimeError: a bug [x]")
    assert "Traceback" not in result.stderr


def test_progress_outside_a_terminal_is_one_line_per_interval():
    import io

    from sealkit.train.progress import LineProgress, make_progress

    quiet = io.StringIO()
    bar = make_progress(50, 0, "dga/classify", file=quiet)
    assert isinstance(bar, LineProgress)
    bar.interval = 3600.0
    for _ in range(50):
        bar.set_postfix({"loss": "0.5"})
        bar.update(1)
    bar.close()
    assert quiet.getvalue().splitlines() == ["dga/classify: step 50/50 (100%) loss=0.5"]  # only the final line

    every = io.StringIO()
    bar = LineProgress(5, 2, "output/retrieve", interval=0.0, file=every)
    for _ in range(3):
        bar.update(1)
    bar.close()
    assert every.getvalue().splitlines() == [f"output/retrieve: step {n}/5 ({100 * n // 5}%)" for n in (3, 4, 5)]
    assert "\r" not in every.getvalue()


def test_tables_are_not_wrapped_outside_a_terminal():
    code = """
from rich.table import Table
from sealkit.cli.common import console
table = Table()
table.add_column("input")
table.add_row("x" * 150 + " [end]")
console.print(table)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "x" * 150 + " [end]" in result.stdout, result.stdout
