"""`sealkit adapt`, `eval` and `predict`: the device's commands.

adapt (and zero-shot eval) import torch; eval --adapter and predict run on the
torch-free runtime (numpy adapters + onnxruntime).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer
from rich.table import Table

from sealkit.cli.checks import at_least, check_templates, positive_finite
from sealkit.cli.common import (
    Device,
    DeviceOption,
    Head,
    JsonOption,
    JsonOutOption,
    KeyOption,
    Method,
    OnBad,
    TaskKind,
    TrainingArena,
    TrainingArenaOption,
    TrainingChunkOption,
    VerifyKeyOption,
    Weights,
    WeightsOption,
    app,
    console,
    emit_json,
    need_extra,
    open_seal_checked,
    warn,
)
from sealkit.data.dataset import Dataset
from sealkit.errors import DataError, SealkitError
from sealkit.fileio import atomic_write_bytes, check_output_path

DataOpts = {
    "image_col": typer.Option(None, "--image-col", help="Table column holding image paths (relative to the table)."),
    "text_col": typer.Option(None, "--text-col", help="Table column holding texts (queries, for text pairs)."),
    "text_b_col": typer.Option(None, "--text-b-col", help="Table column holding the second text of a pair (targets)."),
    "label_col": typer.Option(None, "--label-col", help="Table column holding class labels."),
    "group_col": typer.Option(None, "--group-col", help="Column grouping examples (e.g. movie) so seeded splits keep groups apart."),
}


def _load(spec: str, columns: dict, on_bad: str, limit: Optional[int], captions: Optional[str]) -> Dataset:
    from sealkit.data import load_dataset

    if not any(columns[c] for c in ("image_col", "text_col", "text_b_col", "label_col")):
        from sealkit.data.readers import pick_columns

        picked = pick_columns(spec)  # a table: say which columns its names point to
        if picked:
            console.print(f"{spec}: using " + ", ".join(f"column '{col}' as the {field}" for field, col in picked.items()))
            columns = {**columns, **{f"{field}_col": col for field, col in picked.items()}}
    dataset = load_dataset(spec, on_bad=on_bad, limit=limit, **columns)
    if dataset.problems:
        warn(f"{spec}: skipped {len(dataset.problems)} bad item(s); first: {dataset.problems[0]}")
    if len(dataset) == 0:
        raise DataError(f"{spec} holds no usable examples; check the path and column options")
    if captions:
        if "{}" not in captions:
            raise SealkitError("--captions needs a template with {} for the class name, e.g. 'a photo of a {}'")
        dataset.require("label", task="captions")
        examples = [replace(e, text=captions.format(e.label)) if e.text is None else e for e in dataset.examples]
        dataset = Dataset(examples, dataset.name, dataset.class_names, dataset.problems)
    return dataset


def _metrics_table(title: str, columns: dict[str, dict[str, float] | None], limit_per_class: bool = True) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    keys: list[str] = []
    for metrics in columns.values():
        for key in metrics or {}:
            if key not in keys and not (limit_per_class and key.startswith("accuracy/")):
                keys.append(key)
    for key in keys:
        table.add_row(key, *[f"{m[key]:.4f}" if m and key in m else "-" for m in columns.values()])
    return table


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in text.split(",") if k.strip())
    except ValueError:
        raise SealkitError(f"--recall-k takes comma-separated integers, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise SealkitError("--recall-k needs positive integers, e.g. 1,5,10")
    return ks


def _parse_dilations(text: str) -> tuple[int, ...]:
    """--image-dilations: distinct positive integers, comma-separated (e.g. 1,2)."""
    try:
        dilations = [int(d) for d in text.split(",") if d.strip()]
    except ValueError:
        raise SealkitError(f"--image-dilations takes comma-separated integers, got {text!r}; e.g. 1,2") from None
    if not dilations or min(dilations) < 1 or len(set(dilations)) != len(dilations):
        raise SealkitError(f"--image-dilations needs distinct positive integers, e.g. 1 (one branch) or 1,2 (multi-scale), got {text!r}")
    return tuple(sorted(dilations))


def _unique_rates(rates: list[float] | None) -> list[float]:
    """--lr's values in the order given, each once."""
    return list(dict.fromkeys(rates or []))


def sweep_path(out: Path, rate: float) -> Path:
    """Where a rate sweep writes the run at `rate`: OUT.lr<rate>.adapter next to --out."""
    return out.with_name(f"{out.stem}.lr{rate:g}{out.suffix}")


def rate_sweep(rates: list[float], out: Path, resume: bool, train_one: Callable[[float, Path, bool], Any]) -> Any:
    """One run per input-side rate, each in its own file (and checkpoint, so --resume continues
    the sweep); the run best on validation is copied to `out`. Returns that run's result."""
    from sealkit.train.api import checkpoint_path_for

    results = {}
    for rate in rates:
        path = sweep_path(out, rate)
        console.print(f"--lr {rate:g}: training into {path}")
        result = train_one(rate, path, resume and checkpoint_path_for(path).exists())
        if result.fit.interrupted:
            return result  # the caller reports it; --resume continues from this rate
        results[rate] = result
    table = Table(title=f"validation {results[rates[0]].main_metric} by input-side learning rate")
    table.add_column("--lr")
    table.add_column("best", justify="right")
    table.add_column("at step", justify="right")
    best = max(rates, key=lambda r: results[r].fit.best_metric)  # the first given on ties
    for rate in rates:
        fit = results[rate].fit
        table.add_row(f"{rate:g}" + (" (kept)" if rate == best else ""), f"{fit.best_metric:.4f}", str(fit.best_step))
    console.print(table)
    atomic_write_bytes(out, sweep_path(out, best).read_bytes())
    return replace(results[best], adapter_path=out)


def _check_text_context(value: int) -> None:
    if value != 0 and (value < 3 or value % 2 == 0):
        raise SealkitError(f"--text-context must be 0 (none) or an odd kernel size of 3 or more (e.g. 3 or 5), got {value}")


@app.command()
def adapt(
    seal: Path = typer.Argument(..., help="The seal file."),
    method: Method = typer.Option("dga", "--method", help="output: output adapter only (fastest); dga: + input adapters; lga: + entry points (light seals)."),
    task: TaskKind = typer.Option("classify", "--task", help="classify (labels) or retrieve (image-text or text-text pairs)."),
    train: str = typer.Option(..., "--train", help="Training data: a folder, .csv/.tsv/.jsonl, an IDX file, or a named dataset (fashion-mnist:train, mnist-5k, rotten-tomatoes:sentiment, rotten-tomatoes:review-plot)."),
    val: Optional[str] = typer.Option(None, "--val", help="Validation data; default: a seeded split of --train."),
    out: Path = typer.Option(..., "--out", help="The adapter file to write (TASK.adapter); the checkpoint goes to TASK.adapter.ckpt."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default 200)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Training epochs instead of --steps."),
    batch: int = typer.Option(32, "--batch", help="Examples per step."),
    lr: Optional[list[float]] = typer.Option(None, "--lr", help="Peak learning rate of the input side: input adapters and entries (AdamW, warmup then cosine); default 4e-3 on text towers, 1e-2 on image towers (measured: docs/results.md). Given alone, it applies to both. Repeat it (--lr 2e-3 --lr 4e-3) to train once per rate, each to OUT.lr<rate>.adapter, and keep the best on validation in --out: the best text rate depends on the task (2e-3 for retrieval, 4e-3 for sentiment there)."),
    image_lr: Optional[float] = typer.Option(None, "--image-lr", help="Peak learning rate of image towers' input adapters and entries, overriding --lr there; default 1e-2, or --lr when given."),
    output_lr: Optional[float] = typer.Option(None, "--output-lr", help="Peak learning rate of the head and output adapters; default: picked on the validation split over cached features (with --no-probe: --lr, else 2e-3)."),
    probe: bool = typer.Option(True, "--probe/--no-probe", help="Fit the output stage on cached frozen features first (logistic-regression head, learning-rate pick)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the split, initialisation and batch order."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint next to --out (with several --lr: each rate's, starting the rates that have none)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from another adapter of this seal and task (e.g. an output run before dga)."),
    eval_every: int = typer.Option(0, "--eval-every", help="Evaluate (and checkpoint) every N steps; 0: five times per run."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Share of --train held out when --val is not given."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use a seeded, class-balanced subset of at most N training examples."),
    val_limit: Optional[int] = typer.Option(2000, "--val-limit", help="Evaluate on at most N validation examples."),
    head: Optional[Head] = typer.Option(None, "--head", help="classify: text (class-name prompts; default with a text tower) or linear."),
    template: Optional[list[str]] = typer.Option(None, "--template", help="Class prompt template(s), e.g. 'a photo of a {}.'"),
    captions: Optional[str] = typer.Option(None, "--captions", help="Make a text for each example from its label, e.g. 'a photo of a {}' (image-text retrieval)."),
    recall_k: str = typer.Option("1,5,10", "--recall-k", help="retrieve: the k of recall@k."),
    image_width: Optional[int] = typer.Option(None, "--image-width", help="Hidden channels of a residual 3x3 conv net on pixels in the image input adapter; 0: none. Default: 0 with the image prompt, else 16."),
    text_rank: int = typer.Option(32, "--text-rank", help="Bottleneck of the text input adapter."),
    text_prompts: int = typer.Option(0, "--text-prompts", help="Learnable prompt tokens added to every text (dga/lga)."),
    image_dilations: str = typer.Option("1", "--image-dilations", help="Dilations of the image input adapter's residual conv branches, summed: 1 (default) sees 5x5 pixels; 1,2 adds a branch that sees 9x9 (multi-scale)."),
    image_prompt: Optional[bool] = typer.Option(None, "--image-prompt/--no-image-prompt", help="A learnable pattern, the size of the seal's input, added to every image (a visual prompt). Default: on for dga (on MNIST it moved dga where conv nets on pixels did not), off for lga (docs/results.md)."),
    text_context: int = typer.Option(0, "--text-context", help="Kernel of a zero-initialised depthwise convolution across tokens in the text input adapter (odd, e.g. 3); 0 (default): per-token only."),
    output_hidden: int = typer.Option(-1, "--output-hidden", help="Hidden width of the residual output adapter (-1: about 0.5% of the tower; 0: none)."),
    shared_dim: int = typer.Option(128, "--shared-dim", help="Width of the shared space when two towers differ."),
    on_bad: OnBad = typer.Option("skip", "--on-bad", help="A bad file in the data: skip (and report) or error."),
    key: Optional[Path] = KeyOption,
    device: Device = DeviceOption,
    weights: Weights = WeightsOption,
    training_arena: TrainingArena = TrainingArenaOption,
    training_chunk: int = TrainingChunkOption,
    verify_key: Optional[Path] = VerifyKeyOption,
    image_col: Optional[str] = DataOpts["image_col"],
    text_col: Optional[str] = DataOpts["text_col"],
    text_b_col: Optional[str] = DataOpts["text_b_col"],
    label_col: Optional[str] = DataOpts["label_col"],
    group_col: Optional[str] = DataOpts["group_col"],
) -> None:
    """Train gray-box adapters through the seal; write a small adapter file bound to it."""
    need_extra("adapt", "sealkit adapt")
    method, task, on_bad = method.value, task.value, on_bad.value  # plain strings for the library
    head = head.value if head else None
    check_output_path(out, "--out")  # before loading anything: a bad --out must not cost a training run
    for flag, value, low in (("--batch", batch, 1), ("--eval-every", eval_every, 0), ("--limit", limit, 1), ("--val-limit", val_limit, 1),
                             ("--image-width", image_width, 0), ("--text-rank", text_rank, 1), ("--text-prompts", text_prompts, 0),
                             ("--output-hidden", output_hidden, -1), ("--shared-dim", shared_dim, 1), ("--steps", steps, 1),
                             ("--training-chunk", training_chunk, 0)):  # fmt: skip
        at_least(flag, value, low)
    rates = _unique_rates(lr)
    for flag, value in [*(("--lr", r) for r in rates), ("--image-lr", image_lr)]:
        if value is not None:
            positive_finite(flag, value)
    for rate in rates if len(rates) > 1 else []:
        check_output_path(sweep_path(out, rate), "--out")  # each rate's file, before any training
    if epochs is not None:
        positive_finite("--epochs", epochs)
    check_templates(template)
    dilations = _parse_dilations(image_dilations)
    _check_text_context(text_context)
    from sealkit.adapters.config import AdapterConfig  # torch-free: the adapter's shape is checked before any loading

    adapter_config = AdapterConfig(method, image_width, text_rank, text_prompts, output_hidden, shared_dim, image_dilations=dilations, text_context=text_context, image_prompt=image_prompt)
    columns = dict(image_col=image_col, text_col=text_col, text_b_col=text_b_col, label_col=label_col, group_col=group_col)
    opened = open_seal_checked(
        seal, key, verify_key, providers=device.value, weights=weights.value, training_arena=training_arena.value, training_chunk=training_chunk
    )
    train_set = _load(train, columns, on_bad, limit, captions)
    if val:
        val_set = _load(val, columns, on_bad, val_limit, captions)
    else:
        if not 0 < val_fraction < 1:
            raise SealkitError("--val-fraction must be between 0 and 1")
        val_set, train_set = train_set.split(val_fraction, seed=seed, by_group=train_set.has_groups)
        console.print(f"no --val: holding out {len(val_set)} of {len(train_set) + len(val_set)} examples (seed {seed})")
    if len(train_set) == 0:
        raise DataError("the training set is empty after the validation split; give more data or --val")

    with console.status("loading torch ..."):
        from sealkit.train.api import adapt as run_adapt
        from sealkit.train.config import TrainConfig

    if steps is not None and epochs is not None:
        raise SealkitError("give --steps or --epochs, not both")
    total = steps if steps is not None else (math.ceil(epochs * len(train_set) / batch) if epochs is not None else 200)
    if total < 1:
        raise SealkitError("--steps must be at least 1")
    if output_lr is not None and not output_lr > 0:
        raise SealkitError("--output-lr must be positive; leave it out to pick it on the validation split")
    console.print(f"adapting '{opened.manifest.name}' ({opened.manifest.exposure} seal) with {method} for {task}: {len(train_set)} train / {len(val_set)} val examples, {total} steps of {batch}")
    recall_ks = _parse_ks(recall_k)

    def train_one(rate: float | None, path: Path, resume_run: bool):
        config = TrainConfig(steps=total, batch=batch, lr=rate, image_lr=image_lr, output_lr=output_lr, probe=probe, seed=seed, eval_every=eval_every, max_eval=val_limit or 2000)
        return run_adapt(
            opened, train_set, val_set, path, method=method, task=task, config=config, adapter_config=adapter_config,
            head=head, templates=template, recall_ks=recall_ks, resume=resume_run, init_from=init,
        )  # fmt: skip

    if len(rates) > 1:
        result = rate_sweep(rates, out, resume, train_one)
    else:
        result = train_one(rates[0] if rates else None, out, resume)
    share = 100.0 * result.adapter_parameters / max(1, result.backbone_parameters)
    counts = ", ".join(f"{k} {v:,}" for k, v in result.parameters.items())
    console.print(f"trainable parameters: {result.adapter_parameters:,} = {share:.2f}% of the backbone's {result.backbone_parameters:,} ({counts})")
    if result.fit.interrupted:
        warn(f"interrupted at step {result.fit.steps_done}; checkpoint saved to {result.checkpoint_path}; continue with --resume")
        if result.fit.best_step >= 0:
            console.print(f"the best adapter so far (step {result.fit.best_step}) is in {result.adapter_path}")
        raise typer.Exit(130)
    zero, kind = result.zero_shot, result.baseline_kind
    console.print(_metrics_table(f"validation: {kind} vs {method} (best at step {result.fit.best_step})", {kind: zero, method: result.fit.best_metrics}))
    if kind == "untrained":
        console.print("zero-shot is undefined here (the towers were trained apart, or the head is linear), so the baseline is the untrained adapters: chance level")
    main = result.main_metric
    zero_text = f"{zero[main]:.4f}" if zero else "n/a"
    console.print(f"best {main}: {result.fit.best_metric:.4f} ({kind} {zero_text}) in {result.fit.seconds:.0f}s; adapter written to {result.adapter_path} ({result.adapter_path.stat().st_size / 1e3:.1f} kB)")


@app.command("eval")
def eval_command(
    seal: Path = typer.Argument(..., help="The seal file."),
    data: str = typer.Option(..., "--data", help="Evaluation data (as for adapt --train)."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="Adapter file; without it, the frozen backbone (zero-shot)."),
    task: TaskKind = typer.Option("classify", "--task", help="classify or retrieve (taken from the adapter when given)."),
    head: Optional[Head] = typer.Option(None, "--head", help="Zero-shot classify head."),
    template: Optional[list[str]] = typer.Option(None, "--template", help="Zero-shot class prompt template(s)."),
    captions: Optional[str] = typer.Option(None, "--captions", help="Texts from labels, e.g. 'a photo of a {}'."),
    recall_k: str = typer.Option("1,5,10", "--recall-k", help="retrieve: the k of recall@k."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate on a seeded, class-balanced subset of N examples."),
    as_json: bool = JsonOption,
    json_out: Optional[Path] = JsonOutOption,
    on_bad: OnBad = typer.Option("skip", "--on-bad", help="skip (and report) or error on a bad file."),
    key: Optional[Path] = KeyOption,
    verify_key: Optional[Path] = VerifyKeyOption,
    device: Device = DeviceOption,
    weights: Weights = WeightsOption,
    image_col: Optional[str] = DataOpts["image_col"],
    text_col: Optional[str] = DataOpts["text_col"],
    text_b_col: Optional[str] = DataOpts["text_b_col"],
    label_col: Optional[str] = DataOpts["label_col"],
    group_col: Optional[str] = DataOpts["group_col"],
) -> None:
    """Print a metrics table for an adapter (torch-free) or the zero-shot backbone (needs torch) on a dataset."""
    if adapter is None:
        need_extra("adapt", "sealkit eval without --adapter (zero-shot)")
    task, on_bad = task.value, on_bad.value  # plain strings for the library
    head = head.value if head else None
    if json_out is not None:
        check_output_path(json_out, "--json-out")
    at_least("--limit", limit, 1)
    check_templates(template)
    opened = open_seal_checked(seal, key, verify_key, providers=device.value, weights=weights.value)
    columns = dict(image_col=image_col, text_col=text_col, text_b_col=text_b_col, label_col=label_col, group_col=group_col)
    dataset = _load(data, columns, on_bad, limit, captions)
    with console.status("evaluating ..."):
        if adapter is not None:  # a trained task runs on the torch-free runtime
            from sealkit.runtime.evaluate import evaluate_adapter

            metrics = evaluate_adapter(opened, dataset, adapter, recall_ks=_parse_ks(recall_k))
        else:  # zero-shot builds the task's class prompts with the torch task code
            from sealkit.train.api import evaluate

            metrics = evaluate(opened, dataset, task=task, head=head, templates=template, recall_ks=_parse_ks(recall_k))
    report = {"seal_id": opened.seal_id, "adapter": str(adapter) if adapter else None, "data": data, "examples": len(dataset), "metrics": metrics}
    if emit_json(report, as_json, json_out):
        return
    name = adapter.name if adapter else "zero-shot"
    console.print(_metrics_table(f"{data}: {len(dataset)} examples", {name: metrics}, limit_per_class=False))


def _split_inputs(inputs: list[str]) -> tuple[list[str], list[str]]:
    """Existing image files are images; everything else is text."""
    from sealkit.data.images import IMAGE_EXTENSIONS

    images, texts = [], []
    for item in inputs:
        path = Path(item)
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            if not path.is_file():
                raise DataError(f"image {item} not found")
            images.append(item)
        elif path.suffix.lower() == ".txt" and path.is_file():
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError as exc:
                raise DataError(f"{item} is not UTF-8 text (byte {exc.start} cannot be decoded); save it as UTF-8") from None
            except OSError as exc:
                raise DataError(f"cannot read {item}: {exc.strerror or exc}") from None
            texts.extend(line.strip() for line in lines if line.strip())
        else:
            texts.append(item)
    return images, texts


@app.command()
def predict(
    seal: Path = typer.Argument(..., help="The seal file."),
    inputs: list[str] = typer.Argument(..., help="Image files and/or texts (quoted strings, or .txt files with one text per line)."),
    adapter: Path = typer.Option(..., "--adapter", help="The task's adapter file."),
    top_k: int = typer.Option(3, "--top-k", help="How many labels or matches to show."),
    targets: Optional[list[str]] = typer.Option(None, "--targets", help="retrieve: items to match against (image files, texts, or .txt files)."),
    embed: bool = typer.Option(False, "--embed", help="Print embeddings instead of labels or matches."),
    as_json: bool = JsonOption,
    json_out: Optional[Path] = JsonOutOption,
    key: Optional[Path] = KeyOption,
    verify_key: Optional[Path] = VerifyKeyOption,
    device: Device = DeviceOption,
    weights: Weights = WeightsOption,
) -> None:
    """Labels, top-k matches or embeddings for images and texts, on the torch-free runtime."""
    from sealkit.adapters.functional import normalise
    from sealkit.runtime.task import TaskRuntime

    at_least("--top-k", top_k, 1)
    images, texts = _split_inputs(inputs)  # bad inputs fail before the seal and adapter are loaded
    opened = open_seal_checked(seal, key, verify_key, providers=device.value, weights=weights.value)
    runtime = TaskRuntime(opened, adapter)
    groups = [("image", images), ("text", texts)]
    results = []
    for modality, items in groups:
        if not items:
            continue
        embeddings = runtime.embed(items, modality)
        if embed:
            results += [{"input": item, "embedding": [round(float(v), 6) for v in row]} for item, row in zip(items, embeddings)]
        elif runtime.spec.task == "classify":
            if modality != runtime.query_modality:
                raise DataError(f"{adapter.name} classifies {runtime.query_modality}s; {items[0]!r} is {'an image' if modality == 'image' else 'a text'}")
            for item, preds in zip(items, runtime.classify_embeddings(embeddings, top_k)):
                results.append({"input": item, "predictions": [{"label": p.label, "probability": round(p.score, 4)} for p in preds]})
        else:
            if not targets:
                raise SealkitError("a retrieval adapter needs --targets to match against (or use --embed)")
            target_images, target_texts = _split_inputs(targets)
            names = target_images + target_texts
            parts = [runtime.embed(target_images, "image")] if target_images else []
            parts += [runtime.embed(target_texts, "text")] if target_texts else []
            matrix = normalise(embeddings) @ normalise(np.concatenate(parts)).T
            for item, row in zip(items, matrix):
                order = row.argsort()[::-1][:top_k]
                results.append({"input": item, "matches": [{"target": names[j], "score": round(float(row[j]), 4)} for j in order]})
    if emit_json({"task": runtime.spec.task, "adapter": str(adapter), "results": results}, as_json, json_out):
        return
    table = Table(title=f"{adapter.name} ({runtime.spec.task}, {runtime.method})")
    table.add_column("input", overflow="fold")
    table.add_column("result", overflow="fold")
    for r in results:
        if "predictions" in r:
            value = ", ".join(f"{p['label']} ({p['probability']:.2f})" for p in r["predictions"])
        elif "matches" in r:
            value = ", ".join(f"{m['target']} ({m['score']:.3f})" for m in r["matches"])
        else:
            value = f"[{', '.join(f'{v:.3f}' for v in r['embedding'][:6])}, ...] ({len(r['embedding'])} dims)"
        table.add_row(r["input"], value)
    console.print(table)
