"""The `sealkit` command line. Each submodule registers its commands on one Typer app.

Commands only parse arguments, call library functions and print. Expected failures (SealkitError)
become one line on stderr and the error family's exit code; torch is imported only inside the
commands that need it (export, check, adapt, and eval without --adapter).

Exit codes: 0 success; 1 a generic expected failure; 2 a usage error (bad option or value, as in
click); 3-17 the error families of sealkit/errors.py; 70 an internal error (a bug: please report
it); 130 interrupted. docs/cli.md lists them.
"""

from __future__ import annotations

import os
import sys

from sealkit.cli import adapt_commands, demo_command, seal_commands, serve_command  # noqa: F401  (register their commands)
from sealkit.cli.common import app, err_console, error_line, missing_extra_message
from sealkit.cli.hints import with_hint
from sealkit.errors import SealkitError

INTERNAL_ERROR = 70  # EX_SOFTWARE from sysexits.h: distinct from click's usage error (2)


def main() -> None:
    """Entry point: run the Typer app, turning expected failures into one-line errors."""
    try:
        app()
    except SealkitError as exc:
        error_line("error:", with_hint(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except ModuleNotFoundError as exc:  # an optional extra (torch, fastapi, ...) is not installed
        message = missing_extra_message(exc.name or "")
        if message is None or os.environ.get("SEALKIT_DEBUG"):
            raise
        error_line("error:", message)
        sys.exit(SealkitError.exit_code)
    except Exception as exc:  # a bug, not bad input: still one line unless debugging
        if os.environ.get("SEALKIT_DEBUG"):
            raise
        error_line("internal error:", f"{type(exc).__name__}: {exc} (set SEALKIT_DEBUG=1 for a traceback, and please report it)")
        sys.exit(INTERNAL_ERROR)
