"""Checks of command-line numbers and templates, so bad values are one-line errors before any work.

Typer checks types only; a `--batch 0` or `--lr nan` used to surface as an internal error deep in
training. Each check names the flag and the accepted range.
"""

from __future__ import annotations

import math
import string
from typing import Optional

from sealkit.errors import SealkitError


def at_least(flag: str, value: Optional[int], low: int) -> None:
    """`value` (if given) must be an integer >= low."""
    if value is not None and value < low:
        raise SealkitError(f"{flag} must be at least {low}, got {value}")


def positive_finite(flag: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise SealkitError(f"{flag} must be a positive finite number, got {value}")


def check_templates(templates: Optional[list[str]], flag: str = "--template") -> None:
    """Each template must have exactly one '{}' where the class name goes, and nothing else to fill."""
    for template in templates or []:
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        except ValueError as exc:
            raise SealkitError(f"{flag} {template!r} is not a valid template ({exc}); write e.g. 'a photo of a {{}}.'") from None
        if fields != [""]:
            raise SealkitError(f"{flag} {template!r} must contain exactly one '{{}}' (the class name) and no other fields; write e.g. 'a photo of a {{}}.'")
