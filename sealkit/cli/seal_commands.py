"""`sealkit keygen`, `export`, `inspect` and `check`: the model owner's commands."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from sealkit.cli.common import (
    Device,
    DeviceOption,
    Exposure,
    JsonOption,
    JsonOutOption,
    KeyOption,
    VerifyKeyOption,
    app,
    console,
    emit_json,
    need_extra,
    open_seal_checked,
    parse_options,
    read_key_bytes,
)
from sealkit.errors import SealkitError
from sealkit.seal.manifest import ENTRY_REVEALS


@app.command()
def keygen(out: Path = typer.Option(..., "--out", help="Folder to write seal.key, sign.key and sign.pub into.")) -> None:
    """Write a fresh AES-256 key (seal.key) and an Ed25519 signing key pair (sign.key, sign.pub)."""
    from sealkit.seal.crypto import write_keys

    paths = write_keys(out)
    console.print(f"wrote {paths['key']} (keep secret; give it to devices that may open your seals)")
    console.print(f"wrote {paths['sign_key']} (keep secret; signs your seals)")
    console.print(f"wrote {paths['sign_pub']} (public; devices verify seals with it)")


@app.command("export")
def export_command(
    recipe: Path = typer.Argument(..., help="Recipe file, e.g. export/minilm.py."),
    out: Path = typer.Option(..., "--out", help="Where to write the seal."),
    key: Optional[Path] = KeyOption,
    sign_key: Optional[Path] = typer.Option(None, "--sign-key", help="Ed25519 private key (DIR/sign.key) to sign the seal."),
    exposure: Exposure = typer.Option("dark", "--exposure", help="dark: input and output only; light: also the recipe's entry points."),
    no_encrypt: bool = typer.Option(False, "--no-encrypt", help="Write an obfuscated but unencrypted seal."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Recipe option key=value, e.g. --set image_size=128."),
    residuals: bool = typer.Option(
        False,
        "--residuals",
        help="Also write forward_saved + backward graphs: training runs one forward per step, but devices see the intermediate activations the backward needs.",
    ),
) -> None:
    """Compile a recipe's towers to forward and VJP graphs and write one encrypted, signed seal."""
    need_extra("export", "sealkit export")
    from sealkit.fileio import check_output_path, remove_stale_temps

    check_output_path(out, "--out")  # before compiling (tens of seconds)
    remove_stale_temps(out)
    key_bytes = None
    if not no_encrypt:
        key_bytes = read_key_bytes(key)
        if key_bytes is None:
            raise SealkitError("export encrypts by default: pass --key DIR/seal.key (from `sealkit keygen`), set $SEALKIT_KEY, or pass --no-encrypt")
    signing = None
    if sign_key is not None:
        from sealkit.seal.crypto import read_signing_key

        signing = read_signing_key(sign_key)
    started = time.perf_counter()
    with console.status(f"loading recipe {recipe} ...") as status:
        from sealkit.compile.export import export_seal
        from sealkit.compile.recipe import load_recipe

        loaded = load_recipe(recipe, **parse_options(set_))
        console.print(f"recipe '{loaded.name}': towers {[t.name for t in loaded.towers]} loaded in {time.perf_counter() - started:.1f}s")

        def progress(message: str) -> None:
            console.print(f"  [{time.perf_counter() - started:6.1f}s] {message}")
            status.update(f"exporting '{loaded.name}' ...")

        status.update("compiling graphs (tens of seconds per tower) ...")
        summary = export_seal(loaded, out, key=key_bytes, signing_key=signing, exposure=exposure.value, progress=progress, residuals=residuals)
    m = summary.manifest
    console.print(
        f"sealed '{m.name}' -> {summary.path}: {summary.seal_bytes / 1e6:.1f} MB, weights {summary.weight_bytes / 1e6:.1f} MB "
        f"({summary.parameters:,} parameters), exposure {m.exposure}, "
        f"{'encrypted' if m.encrypted else 'NOT encrypted'}, {'signed' if signing else 'unsigned'}, "
        f"{'with residual graphs (reveals intermediate activations), ' if residuals else ''}seal id {m.seal_id}"
    )


@app.command()
def inspect(
    seal: Path = typer.Argument(..., help="The seal file, or an adapter file (TASK.adapter)."),
    key: Optional[Path] = KeyOption,
    verify_key: Optional[Path] = VerifyKeyOption,
    device: Device = DeviceOption,
    as_json: bool = JsonOption,
    json_out: Optional[Path] = JsonOutOption,
) -> None:
    """Show what a device may know about a seal (and verify it), or what an adapter file (FILE.adapter) holds."""
    if seal.suffix.lower() in (".adapter", ".safetensors"):
        inspect_adapter(seal, as_json, json_out)
        return
    from sealkit.seal.container import read_seal
    from sealkit.seal.crypto import resolve_verify_key_path

    file = read_seal(seal)
    checks = {"integrity": "ok"}
    verify_key = resolve_verify_key_path(verify_key)
    if verify_key is not None:
        file.verify_signature(verify_key)
        checks["signature"] = "verified"
    else:
        checks["signature"] = "present (not verified: pass --verify-key)" if file.signature else "unsigned"
    key_bytes = read_key_bytes(key)
    if file.manifest.encrypted:
        if key_bytes is not None:
            from sealkit.runtime.providers import active_providers
            from sealkit.runtime.seal import Seal
            from sealkit.seal.obfuscate import WEIGHTS_BLOB

            opened = Seal(file, key_bytes, providers=device.value)  # checks the key and decrypts the weights once
            for record in file.manifest.blobs:
                if record.name != WEIGHTS_BLOB:
                    file.blob(record.name, key_bytes)
            checks["key"] = "opens the seal"
            checks["providers"] = ", ".join(active_providers(opened))
        else:
            checks["key"] = "not given (pass --key to check it)"
    m = file.manifest
    kinds = {ep.kind for tower in m.towers.values() for ep in tower.entry_points}
    reveals = {kind: ENTRY_REVEALS.get(kind, "unknown kind") for kind in sorted(kinds)}
    if emit_json({"manifest": m.to_dict(), "checks": checks, "entry_kinds_reveal": reveals}, as_json, json_out):
        return
    console.print(f"{seal}  seal id {m.seal_id}", style="bold")
    console.print(f"name {m.name!r}, format v{m.format_version}, produced by {m.producer.get('name')} {m.producer.get('version')}")
    console.print(f"exposure {m.exposure}; {'encrypted (' + m.encryption['algorithm'] + ', key ' + m.encryption['key_id'] + ')' if m.encryption else 'NOT encrypted (obfuscated only)'}")
    for name, tower in m.towers.items():
        table = Table(title=f"tower '{name}' ({tower.modality}, {tower.parameters:,} parameters)", show_lines=False)
        table.add_column("kind")
        table.add_column("name")
        table.add_column("shape")
        table.add_column("dtype")
        for spec in tower.inputs:
            table.add_row("input" + (" (differentiable)" if spec.differentiable else ""), spec.name, str(list(spec.shape)), spec.dtype)
        table.add_row("output", tower.output.name, str(list(tower.output.shape)), tower.output.dtype)
        if tower.embed:
            table.add_row("embed", f"{tower.embed['input'].name} -> {tower.embed['output'].name}", str(list(tower.embed["output"].shape)), "")
        for ep in tower.entry_points:
            table.add_row(f"entry point ({ep.kind})", ep.name, str(list(ep.shape)), "float32")
        for graph, specs in tower.residuals.items():
            table.add_row("residuals", f"{len(specs)} intermediate activations from {graph}", "", "")
        console.print(table)
        for kind in dict.fromkeys(ep.kind for ep in tower.entry_points):
            console.print(f"  {kind} entry points reveal {ENTRY_REVEALS.get(kind, 'an unknown kind: update sealkit')}")
        if tower.residuals:
            console.print(
                "  residual graphs: training runs one forward per step; the device holds the intermediate "
                "activations listed under 'residuals' in --json (beyond a plain seal's input, output and gradients)"
            )
        console.print(f"  preprocessing: {json.dumps(tower.preprocessing)}")
    for check, result in checks.items():
        console.print(f"{check}: {result}")


def inspect_adapter(path: Path, as_json: bool, json_out: Optional[Path]) -> None:
    """`sealkit inspect TASK.adapter`: its task, method, classes, parameters per module, seal and training record."""
    from sealkit.adapters.file import read_adapter_file
    from sealkit.adapters.summary import describe_adapter

    info = describe_adapter(read_adapter_file(path))
    if emit_json(info, as_json, json_out):
        return
    console.print(f"{path}  adapter for seal {info['seal']['id']} ({info['seal']['name']})", style="bold")
    console.print(f"{info['format']}, written by sealkit {info['sealkit_version']}")
    console.print(f"task {info['task']} with method {info['method']}" + (f", head {info['head']}" if info["task"] == "classify" else "") + f"; towers {info['towers']}")
    if info["classes"]:
        console.print(f"classes ({len(info['classes'])}): {', '.join(info['classes'])}")
    if info["input_adapters"]:
        console.print(f"input adapters: {info['input_adapters']}")
    table = Table(title=f"parameters: {info['parameters']['total']:,}")
    for column in ("module", "tensors", "parameters"):
        table.add_column(column, justify="left" if column == "module" else "right")
    for module, row in info["parameters"]["by_module"].items():
        table.add_row(module, str(row["tensors"]), f"{row['parameters']:,}")
    console.print(table)
    training = info["training"]
    if training:
        metrics = training.get("metrics") or {}
        shown = {k: round(v, 4) for k, v in metrics.items() if "/" not in k}
        console.print(f"training: {training.get('train_examples', '?')} examples, config {json.dumps(training.get('train_config', {}))}")
        console.print(f"best at step {training.get('best_step')}: {shown}; before ({training.get('baseline_kind')}): {training.get('zero_shot')}")
        console.print(f"complete: {training.get('complete')}, {training.get('evaluations')} evaluations, {training.get('seconds', 0) or 0:.0f}s" + (f", started from {training['init_from']}" if training.get("init_from") else ""))
    console.print(f"tensors sha256 {info['tensors_sha256']} (verified)")


@app.command()
def check(
    seal: Path = typer.Argument(..., help="The seal file."),
    recipe: Path = typer.Argument(..., help="The recipe the seal was exported from."),
    key: Optional[Path] = KeyOption,
    verify_key: Optional[Path] = VerifyKeyOption,
    tolerance: Optional[float] = typer.Option(None, "--tolerance", help="Largest relative error allowed (default: the recipe's, else 1e-4)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Recipe option key=value, as given to export."),
) -> None:
    """Owner's parity check: seal vs torch on fresh random inputs; non-zero exit above tolerance."""
    need_extra("export", "sealkit check")
    from sealkit.compile.check import DEFAULT_TOLERANCE, assert_parity, check_seal
    from sealkit.compile.recipe import load_recipe
    # the graphs as exported: with copied weights onnxruntime re-lays out convolutions (NCHWc), which
    # moves values by ~1e-6 and so, now and then, a value across a ReLU6 kink (docs/benchmarks.md)
    opened = open_seal_checked(seal, key, verify_key, weights="shared")
    loaded = load_recipe(recipe, **parse_options(set_))
    limit = tolerance if tolerance is not None else (loaded.tolerance or DEFAULT_TOLERANCE)
    with console.status("comparing the seal with torch autograd ..."):
        rows = check_seal(opened, loaded)
    table = Table(title=f"parity of {seal.name} against {recipe.name} (relative norm error)")
    for column in ("tower", "batch", "sequence", "quantity", "rel. error"):
        table.add_column(column)
    for row in rows:
        style = "red" if row.rel_error > limit else ""
        table.add_row(row.tower, str(row.batch), str(row.sequence or "-"), row.quantity, Text(f"{row.rel_error:.2e}", style=style))
    console.print(table)
    assert_parity(rows, limit)
    console.print(f"parity ok: worst relative error {max(r.rel_error for r in rows):.2e} <= {limit:.0e}")
