"""The `sealkit` command line. Each submodule registers its commands on one Typer app.

Commands only parse arguments, call library functions and print. Expected failures (SealkitError)
become one line on stderr and the error family's exit code; torch is imported only inside the
commands that need it (export, check, adapt).
"""

from __future__ import annotations

import os
import sys

from sealkit.cli import adapt_commands, demo_command, seal_commands, serve_command  # noqa: F401  (register their commands)
from sealkit.cli.common import app, err_console
from sealkit.cli.hints import with_hint
from sealkit.errors import SealkitError


def main() -> None:
    """Entry point: run the Typer app, turning expected failures into one-line errors."""
    try:
        app()
    except SealkitError as exc:
        err_console.print(f"[bold red]error:[/bold red] {with_hint(exc)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        sys.exit(130)
    except Exception as exc:  # a bug, not bad input: still one line unless debugging
        if os.environ.get("SEALKIT_DEBUG"):
            raise
        err_console.print(f"[bold red]internal error:[/bold red] {type(exc).__name__}: {exc} (set SEALKIT_DEBUG=1 for a traceback, and please report it)", highlight=False, soft_wrap=True)
        sys.exit(2)
