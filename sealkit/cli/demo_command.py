"""`sealkit demo`: the main job end to end on an embedded default, in a few minutes on a laptop CPU.

Owner side: keygen, export EfficientNet-Lite0 + all-MiniLM-L6-v2 to an encrypted, signed seal,
inspect it. Device side: adapt it to Fashion-MNIST (classes named in text) with the `output`
method, then `dga` starting from it, compare with the baseline, and predict a few test images
with the torch-free runtime. Every step is a library call that the other commands also use.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from sealkit.cli.common import app, console, need_extra


def _step(title: str) -> None:
    if console.is_terminal:
        console.rule(title, style="bold")
    else:
        console.print(f"== {title}", style="bold")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for keys, the seal, adapters and sample images."),
    image_size: int = typer.Option(96, "--image-size", help="Image resolution the seal is exported at (224 is EfficientNet's own; smaller is faster)."),
    train_limit: int = typer.Option(2000, "--train-limit", help="Fashion-MNIST training images used (class-balanced)."),
    val_limit: int = typer.Option(1000, "--val-limit", help="Fashion-MNIST test images used for evaluation."),
    output_steps: int = typer.Option(150, "--output-steps", help="Steps of the output-adapter run."),
    dga_steps: int = typer.Option(40, "--dga-steps", help="Steps of the DarkGray-box run (0 skips it)."),
) -> None:
    """Export the default two-tower seal and adapt it to Fashion-MNIST: zero-shot vs adapted, side by side."""
    need_extra("export", "sealkit demo")
    started = time.perf_counter()
    from sealkit.data import load_dataset

    train = load_dataset("fashion-mnist:train", limit=train_limit)
    val = load_dataset("fashion-mnist:test", limit=val_limit)

    _step("1/5 owner: keys")
    from sealkit.seal.crypto import read_key, read_signing_key, write_keys

    keys = out / "keys"
    if not (keys / "seal.key").exists():
        write_keys(keys)
        console.print(f"wrote {keys}/seal.key, sign.key, sign.pub")
    else:
        console.print(f"using the keys in {keys}")

    _step("2/5 owner: export the seal (EfficientNet-Lite0 + all-MiniLM-L6-v2)")
    seal_path = out / f"pair-{image_size}.seal"
    if seal_path.exists():
        console.print(f"using the existing {seal_path} (delete it to re-export)")
    else:
        from sealkit.compile.export import export_seal
        from sealkit.compile.recipe import load_recipe
        from sealkit.recipes import recipe_path

        recipe = load_recipe(recipe_path("clip_pair"), image_size=image_size, max_length=32)
        export_seal(
            recipe,
            seal_path,
            key=read_key(keys / "seal.key"),
            signing_key=read_signing_key(keys / "sign.key"),
            exposure="dark",
            progress=lambda message: console.print(f"  [{time.perf_counter() - started:5.0f}s] {message}"),
        )

    _step("3/5 device: open and inspect (verified signature, decrypted in memory)")
    from sealkit.runtime.seal import open_seal

    seal = open_seal(seal_path, key=keys / "seal.key", verify_key=keys / "sign.pub")
    for name, tower in seal.manifest.towers.items():
        console.print(f"tower '{name}': {tower.modality}, input {[list(s.shape) for s in tower.inputs]}, output {list(tower.output.shape)}, {tower.parameters:,} parameters")
    console.print(f"seal {seal.seal_id}: {seal_path.stat().st_size / 1e6:.0f} MB, exposure {seal.manifest.exposure}, nothing else about the model is visible")

    _step("4/5 device: adapt to Fashion-MNIST (class names as text prompts)")
    from sealkit.adapters.config import AdapterConfig
    from sealkit.train.api import adapt
    from sealkit.train.loop import TrainConfig

    results = {}
    output_adapter = out / "fashion-output.adapter"
    results["output"] = adapt(
        seal, train, val, output_adapter, method="output", task="classify",
        config=TrainConfig(steps=output_steps, batch=64, max_eval=val_limit),
    )
    console.print(f"output: accuracy {results['output'].fit.best_metric:.3f} in {results['output'].fit.seconds:.0f}s")
    if dga_steps > 0:
        results["dga"] = adapt(
            seal, train, val, out / "fashion-dga.adapter", method="dga", task="classify",
            config=TrainConfig(steps=dga_steps, batch=32, lr=1e-3, max_eval=val_limit, eval_every=max(1, dga_steps // 2)),
            adapter_config=AdapterConfig(method="dga"),
            init_from=output_adapter,
        )
        console.print(f"dga (from output): accuracy {results['dga'].fit.best_metric:.3f} in {results['dga'].fit.seconds:.0f}s")

    first = results["output"]
    table = Table(title=f"Fashion-MNIST test ({len(val)} images): accuracy")
    for column in ("method", "accuracy", "trainable parameters", "adapter file", "train time"):
        table.add_column(column, justify="right" if column != "method" else "left")
    table.add_row(f"{first.baseline_kind} (before adapting)", f"{first.zero_shot['accuracy']:.3f}" if first.zero_shot else "-", "0", "-", "-")
    for method, result in results.items():
        size = result.adapter_path.stat().st_size / 1e3
        table.add_row(method, f"{result.fit.best_metric:.3f}", f"{result.adapter_parameters:,}", f"{size:.0f} kB", f"{result.fit.seconds:.0f}s")
    console.print(table)
    if first.baseline_kind == "untrained":
        console.print("The two towers were pretrained apart, so before adapting their spaces do not match: chance is 0.100.")

    _step("5/5 device: predict with the torch-free runtime")
    from sealkit.data.images import load_image
    from sealkit.runtime.task import TaskRuntime

    best = max(results.values(), key=lambda r: r.fit.best_metric)
    samples = out / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, example in enumerate(val.examples[:5]):
        path = samples / f"test-{i}-{example.label.replace('/', '-').replace(' ', '-')}.png"
        load_image(example.image).save(path)
        paths.append(str(path))
    runtime = TaskRuntime(seal, best.adapter_path)
    for path, preds in zip(paths, runtime.classify(paths, "image", top_k=2)):
        console.print(f"{Path(path).name}: {preds[0].label} ({preds[0].score:.2f}), then {preds[1].label} ({preds[1].score:.2f})")
    console.print(
        f"done in {time.perf_counter() - started:.0f}s. Try: sealkit predict {seal_path} --key {keys}/seal.key "
        f"--adapter {best.adapter_path} {paths[0]}"
    )
