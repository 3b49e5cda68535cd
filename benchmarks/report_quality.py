"""Turn benchmarks/quality.py's JSON into docs/results_table.md (the one place the quality numbers
live) and docs/quality.png (means with 95% intervals).

  .venv/bin/python benchmarks/report_quality.py benchmarks/results/quality_seeds*.json

Intervals (95%), all computed from the runs' stored per-example test outcomes:
  * per method: the mean over seeds with a t-interval over seeds (training-seed noise only), and a
    two-level bootstrap (each draw resamples the seeds and, independently, the test examples, with
    replacement), which adds the noise of the finite test set;
  * differences and the fraction of full fine-tuning's gain recovered: the same two-level
    bootstrap, PAIRED: one draw picks the same seeds and the same test examples for every method
    of the comparison (they share the split and seeds), so what they have in common cancels.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import stats

METHOD_ORDER = ["zero-shot", "output", "dga", "lga", "lora", "full"]
GRAY = ("output", "dga", "lga")
DRAWS = 4000
TASK_TITLES = {
    "mnist": "MNIST 5k digits (accuracy; EfficientNet-Lite0)",
    "rt-sentiment": "Rotten Tomatoes fresh/rotten (accuracy; MiniLM)",
    "rt-retrieval": "Rotten Tomatoes review -> plot (mean of R@1/10/50, reviews -> plots; MiniLM)",
    "fashion": "Fashion-MNIST image -> caption R@1 (EfficientNet-Lite0 + MiniLM)",
}
COLORS = {"zero-shot": "#9e9e9e", "output": "#90caf9", "dga": "#1e88e5", "lga": "#0d47a1", "lora": "#ffb74d", "full": "#e65100"}


def base_method(name: str) -> str:
    """'lga[entries=residual]' -> 'lga'."""
    return name.split("[", 1)[0]


def example_scores(run: dict) -> np.ndarray:
    """Per test example, the score whose mean is the reported metric (0/1, or the mean of rank < k)."""
    if "correct" in run:
        return np.frombuffer(run["correct"].encode(), dtype=np.uint8) - ord("0")
    ranks = np.asarray(run["ranks"])
    return np.mean([ranks < k for k in run["rank_ks"]], axis=0)


def group(results: dict) -> dict[str, dict[int, dict[str, dict[int, dict]]]]:
    """task -> steps -> method -> seed -> run."""
    out: dict = {}
    for run in results["runs"].values():
        out.setdefault(run["task"], {}).setdefault(run["steps"], {}).setdefault(run["method"], {})[run["seed"]] = run
    return out


def method_sort_key(name: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(base_method(name)) if base_method(name) in METHOD_ORDER else 99, name)


def t_interval(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (float("nan"), float("nan"))
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
    return (float(np.mean(values) - half), float(np.mean(values) + half))


def paired_bootstrap(matrices: list[np.ndarray], statistic: Callable[..., np.ndarray], seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of statistic(mean_1, ..., mean_k) over two-level paired draws.

    Each matrix is [seeds, test examples] with the same seeds and examples in the same order; a draw
    weights seeds and examples by how often it picked them, the same weights for every matrix."""
    seeds, examples = matrices[0].shape
    rng = np.random.default_rng(seed)
    seed_w = np.stack([np.bincount(rng.integers(0, seeds, seeds), minlength=seeds) for _ in range(DRAWS)]) / seeds
    example_w = np.stack([np.bincount(rng.integers(0, examples, examples), minlength=examples) for _ in range(DRAWS)]) / examples
    means = [np.einsum("bs,se,be->b", seed_w, m.astype(np.float64), example_w) for m in matrices]
    with np.errstate(divide="ignore", invalid="ignore"):
        values = statistic(*means)
    values = values[np.isfinite(values)]
    return (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))) if len(values) else (float("nan"), float("nan"))


def common(cells: list[dict[int, dict]]) -> tuple[list[int], list[np.ndarray]]:
    """The seeds every cell has, and each cell's [seeds, examples] score matrix on them."""
    seeds = sorted(set.intersection(*(set(c) for c in cells)))
    return seeds, [np.stack([example_scores(c[s]) for s in seeds]) for c in cells]


def fmt_interval(lo: float, hi: float, scale: float = 1.0, digits: int = 3) -> str:
    return "-" if np.isnan(lo) else f"[{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"


def fmt_bytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB" if n else "0"


def method_rows(steps_runs: dict[str, dict[int, dict]]) -> list[dict]:
    rows = []
    for method in sorted(steps_runs, key=method_sort_key):
        cell = steps_runs[method]
        seeds, (matrix,) = common([cell])
        values = [float(example_scores(cell[s]).mean()) for s in seeds]
        any_run = cell[seeds[0]]
        rows.append(
            {
                "method": method,
                "label": "probe" if "probe" in any_run.get("note", "") else method,
                "mean": float(np.mean(values)),
                "t": t_interval(values),
                "boot": paired_bootstrap([matrix], lambda m: m),
                "seeds": seeds,
                "run": any_run,
                "s_per_step": float(np.mean([cell[s].get("seconds_per_step", np.nan) for s in seeds])),
                "wall": float(np.mean([cell[s].get("wall_seconds", np.nan) for s in seeds])),
            }
        )
    return rows


def comparisons(steps_runs: dict[str, dict[int, dict]]) -> dict[str, tuple]:
    """White-box gain over the baseline, each gray-box method's share of it, and lga(-variants) - LoRA; with paired intervals."""
    out: dict[str, tuple] = {}
    base, full = steps_runs.get("zero-shot"), steps_runs.get("full")
    if base and full:
        seeds, (z, f) = common([base, full])
        if seeds:
            out["white-box gain (full - baseline), points"] = (100 * (f.mean() - z.mean()), paired_bootstrap([z, f], lambda a, b: 100 * (b - a)), len(seeds))
        for method in sorted((m for m in steps_runs if base_method(m) in GRAY), key=method_sort_key):
            seeds, (z, f, g) = common([base, full, steps_runs[method]])
            if seeds:
                gain = f.mean() - z.mean()
                out[f"{method} recovers, % of the gain"] = (
                    100 * (g.mean() - z.mean()) / gain if gain else float("nan"),
                    paired_bootstrap([z, f, g], lambda a, b, c: 100 * (c - a) / (b - a)),
                    len(seeds),
                )
    lora = steps_runs.get("lora")
    for method in sorted((m for m in steps_runs if base_method(m) == "lga"), key=method_sort_key):
        if lora:
            seeds, (w, g) = common([lora, steps_runs[method]])
            if seeds:
                out[f"{method} - lora, points"] = (100 * (g.mean() - w.mean()), paired_bootstrap([w, g], lambda a, b: 100 * (b - a)), len(seeds))
    return out


def table(results: dict) -> str:
    grouped = group(results)
    s = results.get("settings", {})
    lines = [
        "# Quality benchmark: results",
        "",
        "Generated by `benchmarks/report_quality.py` from `benchmarks/quality.py`'s JSON; do not edit by hand.",
        f"Split: data seed {s.get('data_seed')}, {s.get('train')} train / {s.get('val')} val / {s.get('test')} test (per task below); batch {s.get('batch')}.",
        "Each value is the mean over training seeds of the test metric; checkpoints were chosen on the validation value of the same metric.",
        "95% intervals: `t` over seeds; `boot`, a two-level bootstrap over seeds and test examples; differences and the",
        "recovered share use the paired version of that bootstrap (see the script's docstring and docs/results.md).",
    ]
    # the summary: one row per task and budget
    methods = sorted({m for t in grouped.values() for st in t.values() for m in st}, key=method_sort_key)
    lines += ["", "## Summary (mean over seeds; test split)", "", "| task | steps | seeds | " + " | ".join(methods) + " |", "|---|---:|---:|" + "---:|" * len(methods)]
    partial = False
    for task, by_steps in grouped.items():
        for steps in sorted(by_steps):
            rows = {r["method"]: r for r in method_rows(by_steps[steps])}
            # one row compares methods, so it averages the seeds all of them have (a run still going adds seeds to some)
            shared, matrices = common(list(by_steps[steps].values()))
            means = dict(zip(by_steps[steps], (float(m.mean()) for m in matrices))) if shared else {m: r["mean"] for m, r in rows.items()}
            cells = [f"{means[m]:.3f}" + (" (probe)" if rows[m]["label"] == "probe" else "") if m in rows else "-" for m in methods]
            more = any(len(r["seeds"]) > len(shared) for r in rows.values())
            partial |= more
            seeds = (",".join(map(str, shared)) if shared else "none in common") + (" *" if more else "")
            lines.append(f"| {task} | {steps} | {seeds} | " + " | ".join(cells) + " |")
    if partial:
        lines += ["", "\\* Means over the seeds every method of the row has; some methods have more, which their own tables below include."]
    lines += [
        "",
        "## Gains and gaps (paired 95% intervals)",
        "",
        "Whether a task can tell 90% of the gain from 60%: the interval of a recovered share must be narrower than 30 points.",
        "",
        "| task | steps | quantity | value | 95% interval | seeds |",
        "|---|---:|---|---:|---|---:|",
    ]
    for task, by_steps in grouped.items():
        for steps in sorted(by_steps):
            for name, (value, (lo, hi), n) in comparisons(by_steps[steps]).items():
                shown = "- (no gain)" if not np.isfinite(value) else f"{value:+.1f}"
                lines.append(f"| {task} | {steps} | {name} | {shown} | {fmt_interval(lo, hi, digits=1) if np.isfinite(value) else '-'} | {n} |")
    for task, by_steps in grouped.items():
        lines += ["", f"## {TASK_TITLES.get(task, task)}"]
        for steps in sorted(by_steps):
            rows = method_rows(by_steps[steps])
            size = rows[0]["run"].get("test_size", "?")
            lines += [
                "",
                f"### {steps} steps ({size} test examples)",
                "",
                "| method | mean | 95% t (seeds) | 95% boot (seeds x test) | seeds | best step (per seed) | trainable params | ships per task | s/step | s/run | needs |",
                "|---|---:|---|---|---|---|---:|---|---:|---:|---|",
            ]
            for r in rows:
                run = r["run"]
                cell = by_steps[steps][r["method"]]
                best = ", ".join(str(cell[s].get("best_step", "-")) for s in r["seeds"])
                ship = fmt_bytes(run["ship_bytes"]) + (f" (model {fmt_bytes(run['full_model_bytes'])})" if base_method(r["method"]) == "full" else "")
                lines.append(
                    f"| {r['label']} | {r['mean']:.3f} | {fmt_interval(*r['t'])} | {fmt_interval(*r['boot'])} | {','.join(map(str, r['seeds']))} | {best} | "
                    f"{run['trainable']:,} | {ship} | {r['s_per_step']:.2f} | {r['wall']:.0f} | {run['access']} |".replace("| nan |", "| - |")
                )
    return "\n".join(lines) + "\n"


def tick_label(method: str) -> str:
    """A short axis label: the recipe options of a variant go on a second line, wrapped (the tables keep them whole)."""
    if method == "zero-shot":
        return "zero-shot/probe"
    base, _, options = method.partition("[")
    return base if not options else base + "\n" + textwrap.fill(options.removesuffix("]").replace(", ", ","), 22)


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = group(results)
    fig, axes = plt.subplots(1, len(grouped), figsize=(6.0 * len(grouped), 4.2), squeeze=False)
    for ax, (task, by_steps) in zip(axes[0], grouped.items()):
        budgets = sorted(by_steps)
        methods = sorted({m for st in by_steps.values() for m in st}, key=method_sort_key)
        width = 0.8 / len(budgets)
        low, high = 1.0, 0.0
        for b, steps in enumerate(budgets):
            rows = {r["method"]: r for r in method_rows(by_steps[steps])}
            xs = [i + (b - (len(budgets) - 1) / 2) * width for i, m in enumerate(methods) if m in rows]
            shown = [rows[m] for m in methods if m in rows]
            means = np.array([r["mean"] for r in shown])
            errors = np.array([[r["mean"] - r["boot"][0], r["boot"][1] - r["mean"]] for r in shown]).T
            ax.bar(
                xs,
                means,
                width,
                yerr=np.nan_to_num(errors),
                capsize=2,
                color=[COLORS.get(base_method(r["method"]), "#666") for r in shown],
                hatch="//" if b else None,
                edgecolor="white",
                label=f"{steps} steps",
            )
            low = min(low, float(np.min(means - np.nan_to_num(errors[0]))))
            high = max(high, float(np.max(means + np.nan_to_num(errors[1]))))
        ax.set_xticks(range(len(methods)), [tick_label(m) for m in methods], rotation=30, ha="right", fontsize=7)
        ax.set_title(TASK_TITLES.get(task, task).split(" (")[0], fontsize=9)
        any_cell = next(iter(next(iter(by_steps.values())).values()))
        ax.set_ylabel(next(iter(any_cell.values()))["main_metric"])
        ax.set_ylim(max(0.0, low - 0.05), min(1.0, high + 0.05))  # a low metric (recall) keeps its differences visible
        ax.legend(fontsize=7)
    fig.suptitle("gray-box (blue) vs white-box (orange)\nmean over seeds, 95% bootstrap interval over seeds x test examples", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def read_results(path: Path) -> dict:
    try:
        results = json.loads(path.read_text())
        runs = results["runs"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"cannot read {path} as quality.py results: {exc}") from None
    if not runs or not all("|" in key for key in runs):
        raise SystemExit(f"{path} holds no runs of the multi-seed format (benchmarks/quality.py)")
    return results


def merge(files: list[dict]) -> dict:
    """One results dict from several files written with the same data settings (refused otherwise)."""
    settings = files[0]["settings"]
    for other in files[1:]:
        differ = [k for k in ("train", "val", "test", "data_seed", "batch", "image_size") if other["settings"].get(k) != settings.get(k)]
        if differ:
            raise SystemExit(f"the results files differ in {', '.join(differ)}; report them separately")
    return {"settings": settings, "runs": {k: v for f in files for k, v in f["runs"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+", help="one or more quality.py JSON files (e.g. one per task); their runs are merged")
    parser.add_argument("--table", type=Path, default=Path("docs/results_table.md"))
    parser.add_argument("--chart", type=Path, default=Path("docs/quality.png"))
    args = parser.parse_args()
    results = merge([read_results(path) for path in args.results])
    args.table.write_text(table(results))
    chart(results, args.chart)
    print(f"wrote {args.table} and {args.chart}")


if __name__ == "__main__":
    main()
