"""Turn benchmarks/quality.py's JSON into the markdown table and bar chart used by docs/results.md.

  .venv/bin/python benchmarks/report_quality.py benchmarks/results/quality.json \
      --table docs/results_table.md --summary docs/results_summary.md --chart docs/quality.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METHOD_ORDER = ["zero-shot", "output", "dga", "lga", "lora", "full"]
# Fashion-MNIST has 10 distinct captions, so its recall@5/@10 saturate: judge it by image->text R@1
MAIN_OVERRIDE = {"fashion": "image->text R@1"}
TASK_TITLES = {
    "fashion": "Fashion-MNIST image-text (image->text R@1; EfficientNet-Lite0 + MiniLM)",
    "rt-retrieval": "Rotten Tomatoes review -> plot (mean recall @1/10/50; MiniLM)",
    "rt-sentiment": "Rotten Tomatoes fresh/rotten (accuracy; MiniLM)",
    "mnist": "MNIST 5k digits (accuracy; EfficientNet-Lite0)",
}


def fmt_bytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB" if n else "0"


def table(results: dict) -> str:
    lines = []
    for task, runs in results["runs"].items():
        main = MAIN_OVERRIDE.get(task, next(iter(runs.values()))["main_metric"])
        lines.append(f"\n### {TASK_TITLES.get(task, task)}\n")
        keys = [k for k in next(iter(runs.values()))["metrics"] if not k.startswith("accuracy/")]
        header = ["method", *keys, "trainable params", "ships per task", "s/step", "needs"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        zero = runs.get("zero-shot", {}).get("metrics", {}).get(main)
        full = runs.get("full", {}).get("metrics", {}).get(main)
        for method in [m for m in METHOD_ORDER if m in runs]:
            r = runs[method]
            name = method if method != "zero-shot" else r.get("note", "zero-shot")
            cells = [name] + [f"{r['metrics'].get(k, float('nan')):.3f}" for k in keys]
            ship = fmt_bytes(r["ship_bytes"]) + (f" (vs {fmt_bytes(r['full_model_bytes'])} model)" if method == "full" else "")
            cells += [f"{r['trainable']:,}", ship, f"{r.get('seconds_per_step', 0):.2f}" if "seconds_per_step" in r else "-", r["access"]]
            lines.append("| " + " | ".join(cells) + " |")
        if zero is not None and full is not None and full != zero:
            parts = []
            for method in ("dga", "lga", "output"):
                if method in runs:
                    gain = (runs[method]["metrics"][main] - zero) / (full - zero)
                    parts.append(f"{method} recovers {100 * gain:.0f}%")
            lines.append(f"\nOf full fine-tuning's gain over {runs['zero-shot'].get('note', 'zero-shot')} ({main} {zero:.3f} -> {full:.3f}): " + ", ".join(parts) + ".")
        if "lga" in runs and "lora" in runs:
            diff = 100 * (runs["lga"]["metrics"][main] - runs["lora"]["metrics"][main])
            lines.append(f"lga minus LoRA: {diff:+.1f} points of {main}.")
    return "\n".join(lines) + "\n"


def summary(results: dict) -> str:
    """One row per task, one column per method: the task's main metric on the test split."""
    methods = [m for m in METHOD_ORDER if any(m in runs for runs in results["runs"].values())]
    lines = ["| task (metric) | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for task, runs in results["runs"].items():
        main = MAIN_OVERRIDE.get(task, next(iter(runs.values()))["main_metric"])
        cells = []
        for m in methods:
            value = f"{runs[m]['metrics'][main]:.3f}" if m in runs else "-"
            if m == "zero-shot" and "probe" in runs.get(m, {}).get("note", ""):
                value += " (probe)"
            cells.append(value)
        lines.append(f"| {task} ({main}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results["runs"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    colors = {"zero-shot": "#9e9e9e", "output": "#90caf9", "dga": "#1e88e5", "lga": "#0d47a1", "lora": "#ffb74d", "full": "#e65100"}
    for ax, task in zip(axes[0], tasks):
        runs = results["runs"][task]
        methods = [m for m in METHOD_ORDER if m in runs]
        main = MAIN_OVERRIDE.get(task, runs[methods[0]]["main_metric"])
        values = [runs[m]["metrics"][main] for m in methods]
        labels = ["probe" if m == "zero-shot" and "probe" in runs[m].get("note", "") else m for m in methods]
        ax.bar(labels, values, color=[colors[m] for m in methods])
        for i, v in enumerate(values):
            ax.text(i, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
        ax.set_title(TASK_TITLES.get(task, task).split(" (")[0], fontsize=9)
        ax.set_ylabel(main)
        ax.set_ylim(0, 1.05)
        ax.tick_params(axis="x", labelsize=8, rotation=30)
    fig.suptitle("gray-box (blue) vs white-box (orange), same splits, seed and step budget", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--table", type=Path, default=Path("docs/results_table.md"))
    parser.add_argument("--chart", type=Path, default=Path("docs/quality.png"))
    parser.add_argument("--summary", type=Path, default=Path("docs/results_summary.md"))
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    args.table.write_text(table(results))
    args.summary.write_text(summary(results))
    chart(results, args.chart)
    print(f"wrote {args.table}, {args.summary} and {args.chart}")


if __name__ == "__main__":
    main()
