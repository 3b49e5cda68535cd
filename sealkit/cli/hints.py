"""Command-line hints for library errors: the library names what to change, the CLI names the flag.

Library code raises typed errors with a `topic` (sealkit/errors.py) and never mentions flags;
`with_hint` appends the matching option here, so messages stay right for Python API users too.
"""

from __future__ import annotations

from sealkit.errors import SealkitError

HINTS = {
    "key": "pass --key DIR/seal.key",
    "keygen": "run `sealkit keygen --out DIR`",
    "keygen-out": "pass another --out",
    "verify-key": "check --verify-key",
    "exposure": "use --method dga, or ask the owner for a seal exported with --exposure light",
    "exposure-export": "--exposure light needs them; pass --exposure dark",
    "head": "pass --head linear",
    "columns": "pass --image-col, --text-col and/or --label-col",
    "column:image": "pass --image-col",
    "column:text": "pass --text-col",
    "column:text_b": "pass --text-b-col",
    "column:label": "pass --label-col",
    "column:group": "pass --group-col",
    "resume": "run without --resume to start fresh",
    "lr": "pass a lower --lr",
}


def with_hint(exc: SealkitError) -> str:
    """The error's message, plus the command-line hint for its topic when there is one."""
    message = str(exc)
    hint = HINTS.get(exc.topic or "")
    return f"{message} ({hint})" if hint else message
