"""`sealkit demo`: the main job end to end on an embedded default, in a few minutes on a laptop CPU.

Owner side: keygen, export EfficientNet-Lite0 to an encrypted, signed light seal whose entry points
are small residual adapters inside the network, inspect it. Device side: adapt it to MNIST digits,
a domain far from ImageNet, first with the `output` method (a fitted probe on the frozen outputs),
then LightGray-box (`lga`) starting from it; both are chosen on a validation split and compared on
held-out test digits with bootstrap intervals; then predict a few digits with the torch-free
runtime. Every step is a library call that the other commands also use.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from sealkit.cli.common import app, console, need_extra

ENTRIES = "residual"  # the entry-point kind the demo's seal declares (chosen in docs/results.md)
LGA_LR = 2e-3


def _step(title: str) -> None:
    if console.is_terminal:
        console.rule(title, style="bold")
    else:
        console.print(f"== {title}", style="bold")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for keys, the seal, adapters and sample images."),
    image_size: int = typer.Option(96, "--image-size", help="Image resolution the seal is exported at (224 is EfficientNet's own; smaller is faster)."),
    train_limit: int = typer.Option(2000, "--train-limit", help="MNIST training digits used (class-balanced)."),
    val_limit: int = typer.Option(400, "--val-limit", help="Validation digits (held out of training; every choice is made on them)."),
    test_limit: int = typer.Option(1000, "--test-limit", help="Test digits (only reported)."),
    steps: int = typer.Option(150, "--steps", help="Steps of the LightGray-box run (0 skips it)."),
    lr: float = typer.Option(LGA_LR, "--lr", help="Peak learning rate of the LightGray-box input side."),
) -> None:
    """Export EfficientNet-Lite0 as a light seal and adapt it to MNIST: output-only vs LightGray-box on test digits."""
    need_extra("export", "sealkit demo")
    started = time.perf_counter()
    from sealkit.data import load_dataset

    pool = load_dataset("mnist-5k")
    test, rest = pool.split(0.3, seed=0)
    val, train = rest.split(val_limit / len(rest), seed=0)
    train, test = train.subset(train_limit, seed=0), test.subset(test_limit, seed=0)
    console.print(f"MNIST digits: {len(train)} train, {len(val)} validation, {len(test)} test (disjoint)")

    _step("1/6 owner: keys")
    from sealkit.seal.crypto import read_key, read_signing_key, write_keys

    keys = out / "keys"
    if not (keys / "seal.key").exists():
        write_keys(keys)
        console.print(f"wrote {keys}/seal.key, sign.key, sign.pub")
    else:
        console.print(f"using the keys in {keys}")

    _step(f"2/6 owner: export a light seal of EfficientNet-Lite0 ({ENTRIES} entry points)")
    seal_path = out / f"efficientnet-{image_size}-{ENTRIES}.seal"
    if seal_path.exists():
        console.print(f"using the existing {seal_path} (delete it to re-export)")
    else:
        from sealkit.compile.export import export_seal
        from sealkit.compile.recipe import load_recipe
        from sealkit.recipes import recipe_path

        export_seal(
            load_recipe(recipe_path("efficientnet_lite0"), image_size=image_size, entries=ENTRIES),
            seal_path,
            key=read_key(keys / "seal.key"),
            signing_key=read_signing_key(keys / "sign.key"),
            exposure="light",
            progress=lambda message: console.print(f"  [{time.perf_counter() - started:5.0f}s] {message}"),
        )

    _step("3/6 device: open and inspect (verified signature, decrypted in memory)")
    from sealkit.runtime.seal import open_seal
    from sealkit.seal.manifest import ENTRY_REVEALS

    seal = open_seal(seal_path, key=keys / "seal.key", verify_key=keys / "sign.pub")
    tower = seal.manifest.towers["image"]
    console.print(f"tower 'image': input {list(tower.inputs[0].shape)}, output {list(tower.output.shape)}, {tower.parameters:,} parameters")
    console.print(f"{len(tower.entry_points)} entry points {[list(ep.shape) for ep in tower.entry_points]}; they reveal {ENTRY_REVEALS[ENTRIES]}")

    from sealkit.adapters.config import AdapterConfig
    from sealkit.train.api import adapt
    from sealkit.train.config import TrainConfig

    results = {}
    _step("4/6 device: output only (a probe fitted on the frozen outputs)")
    output_adapter = out / "mnist-output.adapter"
    results["output"] = adapt(seal, train, val, output_adapter, method="output", task="classify", head="linear", config=TrainConfig(steps=100, batch=64, max_eval=val_limit))
    console.print(f"output: validation accuracy {results['output'].fit.best_metric:.3f} in {results['output'].fit.seconds:.0f}s")
    if steps > 0:
        _step("5/6 device: LightGray-box (lga) through the seal, from the output adapter")
        results["lga"] = adapt(
            seal, train, val, out / "mnist-lga.adapter", task="classify", head="linear",
            config=TrainConfig(steps=steps, batch=32, lr=lr, max_eval=val_limit),
            adapter_config=AdapterConfig(method="lga"),
            init_from=output_adapter,
        )
        console.print(f"lga: validation accuracy {results['lga'].fit.best_metric:.3f} (best at step {results['lga'].fit.best_step}) in {results['lga'].fit.seconds:.0f}s")

    _step("6/6 device: held-out test digits, with the torch-free runtime")
    from sealkit.runtime.metrics import bootstrap_interval
    from sealkit.runtime.task import TaskRuntime

    images = [example.image for example in test.examples]
    labels = np.array([example.label for example in test.examples])
    correct = {}
    for method, result in results.items():
        predictions = TaskRuntime(seal, result.adapter_path).classify(images, "image", top_k=1)
        correct[method] = np.array([p[0].label for p in predictions]) == labels
    table = Table(title=f"MNIST test ({len(test)} digits): accuracy with a 95% bootstrap interval")
    for column in ("method", "test accuracy", "95% interval", "trainable parameters", "adapter file", "train time"):
        table.add_column(column, justify="right" if column != "method" else "left")
    for method, result in results.items():
        low, high = bootstrap_interval(correct[method])
        size = result.adapter_path.stat().st_size / 1e3
        table.add_row(method, f"{correct[method].mean():.3f}", f"[{low:.3f}, {high:.3f}]", f"{result.adapter_parameters:,}", f"{size:.0f} kB", f"{result.fit.seconds:.0f}s")
    console.print(table)
    if "lga" in correct:
        console.print(_verdict(correct["lga"].astype(float) - correct["output"].astype(float)))

    best = "lga" if "lga" in results and results["lga"].fit.best_metric > results["output"].fit.best_metric else "output"
    samples = out / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    from sealkit.data.images import load_image

    paths = []
    spread = test.examples[:: max(1, len(test) // 5)][:5]  # the digits come sorted: one from each fifth
    for i, example in enumerate(spread):
        path = samples / f"test-{i}-digit-{example.label}.png"
        load_image(example.image).save(path)
        paths.append(str(path))
    runtime = TaskRuntime(seal, results[best].adapter_path)
    for path, preds in zip(paths, runtime.classify(paths, "image", top_k=2)):
        console.print(f"{Path(path).name}: {preds[0].label} ({preds[0].score:.2f}), then {preds[1].label} ({preds[1].score:.2f})")
    console.print(
        f"done in {time.perf_counter() - started:.0f}s ({best} chosen on validation). Try: sealkit predict {seal_path} --key {keys}/seal.key "
        f"--adapter {results[best].adapter_path} {paths[0]}"
    )


def _verdict(difference: np.ndarray) -> str:
    """One line: does lga beat output on the test digits beyond the noise (paired bootstrap)?"""
    from sealkit.runtime.metrics import bootstrap_interval

    low, high = bootstrap_interval(difference)
    points = f"{100 * difference.mean():+.1f} points (95% paired interval [{100 * low:+.1f}, {100 * high:+.1f}])"
    if low > 0:
        return f"lga beats output by {points}: beyond the noise."
    if high < 0:
        return f"lga is below output by {points}."
    return f"lga - output: {points}: within the noise on this run."
