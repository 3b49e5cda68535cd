"""Shared pieces of the `sealkit` command line: the Typer app, consoles and small argument helpers."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.text import Text

from sealkit.errors import SealkitError

app = typer.Typer(
    rich_markup_mode=None,  # plain click help and one-line click usage errors (no boxes, no markup)
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Adapt a sealed foundation model to new tasks without access to its weights.",
)


def _make_console(stderr: bool) -> Console:
    """A console that prints every string literally: markup and emoji codes are off, so paths, texts,
    labels and error messages such as 'data[v2].seal' or '[red]great[/red]' are shown as they are.
    Styles are applied with `style=` or Text objects (see `error_line`, `warn`), never by markup.
    Outside a terminal (a pipe, a log file, CI) lines and tables are not wrapped at 80 columns."""
    made = Console(stderr=stderr, markup=False, emoji=False, highlight=False)
    if not made.is_terminal:
        made.width = WIDE
    return made


WIDE = 400  # the console width outside a terminal: wide enough that tables are never wrapped
console = _make_console(stderr=False)
err_console = _make_console(stderr=True)


def error_line(label: str, message: str) -> None:
    """One line on stderr: a red label ('error:', 'internal error:') and the message, verbatim."""
    err_console.print(Text.assemble((label, "bold red"), " ", message), soft_wrap=True)


def warn(message: str) -> None:
    """A yellow line on stdout (skipped items, refused adapters), verbatim."""
    console.print(Text(message, style="yellow"), soft_wrap=True)


class Choice(str, Enum):
    """A fixed set of option values: typer lists them in --help and click checks them before any work
    (a usage error, exit 2). Members are plain strings to the library code (name == value)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


def choice(name: str, *values: str) -> type[Choice]:
    return Choice(name, [(v, v) for v in values])  # type: ignore[return-value]


Method = choice("Method", "output", "dga", "lga")
TaskKind = choice("TaskKind", "classify", "retrieve")
Head = choice("Head", "text", "linear")
OnBad = choice("OnBad", "skip", "error")
Exposure = choice("Exposure", "dark", "light")
Weights = choice("Weights", "auto", "shared", "copied")
TrainingArena = choice("TrainingArena", "auto", "on", "off")
LogLevel = choice("LogLevel", "debug", "info", "warning", "error")
Device = choice("Device", "auto", "cpu", "cuda")
WeightsOption = typer.Option(
    "auto",
    "--weights",
    help="How onnxruntime holds the backbone's weights. shared: once for all graphs (least memory); copied: its own optimised copy per "
    "graph (faster, convolutions most: EfficientNet-Lite0's dga trains 1.4x faster, for 31 MiB more peak memory at batch 8); auto: copied for "
    "graphs with up to 32 MiB of weights, shared above.",
)
TrainingArenaOption = typer.Option(
    "auto",
    "--training-arena",
    help="onnxruntime's CPU memory arena for the training graphs: speed against memory. At batch 8, MiniLM: on takes 0.83x the time per "
    "step for 14 MiB more peak; EfficientNet-Lite0: the whole batch's step took 0.53x the time with it, but in chunks of 2 rows dga "
    "peaks at 387 against 229 MiB (full fine-tuning: 646). auto: on for text towers, off for image towers.",
)
TrainingChunkOption = typer.Option(
    0,
    "--training-chunk",
    help="Rows of a batch per run of the seal's training graphs: a run's working memory grows with its rows, its time per row hardly "
    "does. EfficientNet-Lite0, batch 8: dga peaks at 270 / 229 / 252 / 337 MiB with chunks of 1 / 2 / 4 / 8 rows. "
    "0 (auto): 4 rows for image towers and 16 for text towers on the CPU, or one per thread if that is more; the whole batch on CUDA.",
)
DeviceOption = typer.Option(
    "auto", "--device", help="onnxruntime execution provider: cuda needs onnxruntime-gpu (pip install 'sealkit[gpu]'); auto: cuda when available."
)


def _version(value: bool) -> None:
    if value:
        from sealkit import __version__

        print(f"sealkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print sealkit's version and exit.", is_eager=True, callback=_version),
) -> None:
    """Adapt a sealed foundation model to new tasks without access to its weights."""


KeyOption = typer.Option(None, "--key", help="AES key file (DIR/seal.key). Default: the file named by $SEALKIT_KEY.")
VerifyKeyOption = typer.Option(None, "--verify-key", help="The owner's public key (sign.pub); refuse the seal unless it verifies. Default: the file named by $SEALKIT_VERIFY_KEY.")


def open_seal_checked(seal: Path, key: Optional[Path], verify_key: Optional[Path], **options):
    """open_seal with the CLI's key sources, printing its authenticity warnings (unencrypted, unsigned) on stderr."""
    from sealkit.runtime.seal import open_seal

    opened = open_seal(seal, key=read_key_bytes(key), verify_key=verify_key, **options)
    for warning in opened.authenticity_warnings:
        err_console.print(Text.assemble(("warning:", "yellow"), " ", warning), soft_wrap=True)
    return opened


# One meaning everywhere: --json prints JSON (only) to stdout; --json-out PATH also writes it to a file.
JsonOption = typer.Option(False, "--json", help="Print the result as JSON on stdout instead of tables.")
JsonOutOption = typer.Option(None, "--json-out", help="Also write the result as JSON to this file (atomically).")


def emit_json(payload: dict, as_json: bool, json_out: Optional[Path]) -> bool:
    """Write `payload` to --json-out and/or stdout (--json). True when stdout got the JSON (print nothing else)."""
    if json_out is not None:
        from sealkit.fileio import atomic_write_json, check_output_path

        atomic_write_json(check_output_path(json_out, "--json-out"), payload)
        if not as_json:
            console.print(f"wrote {json_out}")
    if as_json:
        print(json.dumps(payload, indent=2))
    return as_json


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


# Which extra brings which optional module: a missing one is named in one line, not a traceback.
EXTRA_MODULES = {
    "adapt": ("torch", "tqdm"),
    "export": ("torch", "onnxscript"),
    "serve": ("fastapi", "uvicorn", "multipart", "prometheus_client", "fastapi_offline"),
}
EXTRA_FOR_MODULE: dict[str, str] = {}
for _extra, _modules in EXTRA_MODULES.items():
    for _module in _modules:
        EXTRA_FOR_MODULE.setdefault(_module, _extra)  # torch: adapt, the extra most users need


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_extra_message(module: str) -> str | None:
    """The one-line hint for a missing optional module, or None when no extra provides it."""
    extra = EXTRA_FOR_MODULE.get(module.split(".")[0])
    if extra is None:
        return None
    return f"this command needs {module.split('.')[0]}, which the core install leaves out: pip install 'sealkit[{extra}]'"


def need_extra(extra: str, what: str) -> None:
    """Check, before any work, that the modules of `extra` are installed; else one line saying what to install."""
    missing = [m for m in EXTRA_MODULES[extra] if not _installed(m)]
    if missing:
        raise SealkitError(f"{what} needs {', '.join(missing)}, which the core install leaves out: pip install 'sealkit[{extra}]'")
