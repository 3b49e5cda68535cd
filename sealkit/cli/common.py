"""Shared pieces of the `sealkit` command line: the Typer app, consoles and small argument helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from sealkit.errors import SealkitError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Adapt a sealed foundation model to new tasks without access to its weights.",
)
console = Console()
err_console = Console(stderr=True)

KeyOption = typer.Option(None, "--key", help="AES key file (DIR/seal.key). Default: the file named by $SEALKIT_KEY.")
VerifyKeyOption = typer.Option(None, "--verify-key", help="The owner's public key (sign.pub); refuse the seal unless it verifies. Default: the file named by $SEALKIT_VERIFY_KEY.")


def open_seal_checked(seal: Path, key: Optional[Path], verify_key: Optional[Path], **options):
    """open_seal with the CLI's key sources, printing its authenticity warnings (unencrypted, unsigned) on stderr."""
    from sealkit.runtime.seal import open_seal

    opened = open_seal(seal, key=read_key_bytes(key), verify_key=verify_key, **options)
    for warning in opened.authenticity_warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    return opened


def parse_options(values: list[str] | None) -> dict[str, object]:
    """`--set key=value` pairs; values are parsed as JSON when they can be (numbers, lists)."""
    options: dict[str, object] = {}
    for item in values or []:
        if "=" not in item:
            raise SealkitError(f"--set takes key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def read_key_bytes(key: Optional[Path]) -> bytes | None:
    """The AES key from --key, else from $SEALKIT_KEY, else None."""
    from sealkit.seal import crypto

    path = crypto.resolve_key_path(key)
    return crypto.read_key(path) if path else None
