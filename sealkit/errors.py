"""The exceptions sealkit raises for expected failures, one type per failure family.

Each message is one line that names the problem and says what to do. The CLI prints the
message and exits with the family's exit code; it never shows a traceback for these.
This module imports nothing heavy, so every layer can use it.
"""

from __future__ import annotations


class SealkitError(Exception):
    """Base class of every expected sealkit failure.

    `topic` names what the user can change (e.g. "key", "column:text"); the library's message
    speaks in API terms and the CLI adds the matching command-line hint (sealkit/cli/hints.py).
    """

    exit_code = 1

    def __init__(self, message: str = "", *, topic: str | None = None) -> None:
        super().__init__(message)
        self.topic = topic


class SealFormatError(SealkitError):
    """The file is not a seal, or uses a format version this sealkit cannot read."""

    exit_code = 3


class SealIntegrityError(SealkitError):
    """The seal was tampered with, truncated or corrupted."""

    exit_code = 4


class SealKeyError(SealkitError):
    """The decryption key is missing, unreadable or not the one the seal was encrypted with."""

    exit_code = 5


class SealSignatureError(SealkitError):
    """The seal's signature is missing or does not verify against the given public key."""

    exit_code = 6


class InputError(SealkitError):
    """An input to the runtime has the wrong name, shape or dtype."""

    exit_code = 7


class RecipeError(SealkitError):
    """A recipe file cannot be loaded or describes its towers inconsistently."""

    exit_code = 8


class ExportError(SealkitError):
    """A recipe loaded but its towers could not be compiled to ONNX."""

    exit_code = 9


class ParityError(SealkitError):
    """The seal's outputs or gradients differ from torch by more than the tolerance."""

    exit_code = 10


class AdapterError(SealkitError):
    """An adapter file is malformed, or the adapter configuration is invalid."""

    exit_code = 11


class AdapterMismatchError(AdapterError):
    """An adapter file belongs to a different seal than the one it is used with."""

    exit_code = 12


class ExposureError(SealkitError):
    """A method needs entry points that the seal does not expose (a `dark` seal)."""

    exit_code = 13


class DataError(SealkitError):
    """A dataset is empty, malformed, or lacks a column or label the task needs."""

    exit_code = 14


class CheckpointError(SealkitError):
    """A training checkpoint is missing, corrupt, or from a different run configuration."""

    exit_code = 15


class ServeError(SealkitError):
    """The serving configuration is invalid (adapters folder, port, limits)."""

    exit_code = 16


class TrainingError(SealkitError):
    """Training cannot go on: the loss or the weights became NaN or infinite (the last good checkpoint is kept)."""

    exit_code = 17


class OutputPathError(SealkitError):
    """An output path cannot be written (a folder, under a file, read-only); checked before any work."""

    exit_code = 18


class DeviceError(SealkitError):
    """The requested execution provider (device) is not available in this onnxruntime build."""

    exit_code = 19
