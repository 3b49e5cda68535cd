"""Dataset readers for image folders, CSV/TSV/JSONL tables and IDX files, and `load_dataset` to pick one.

This module never imports torch.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sealkit.data import catalog
from sealkit.data.dataset import Dataset, Example
from sealkit.data.idx import read_idx
from sealkit.data.images import image_file_problem
from sealkit.errors import DataError

__all__ = ["read_image_folder", "read_table", "read_idx", "load_dataset"]

TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open}


class _Problems:
    """Bad items are listed in `Dataset.problems` (on_bad="skip") or raise DataError at the first one
    (on_bad="error"), so nothing is ever dropped silently."""

    def __init__(self, on_bad: str) -> None:
        if on_bad not in ("skip", "error"):
            raise DataError(f"on_bad must be 'skip' or 'error', got {on_bad!r}")
        self.on_bad = on_bad
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        if self.on_bad == "error":
            raise DataError(f"{line}; fix or remove it, or use on_bad='skip' to skip bad items")
        self.lines.append(line)


# ----- image folders -----


def read_image_folder(root: str | Path, on_bad: str = "skip") -> Dataset:
    """root/<class>/<image files>: the label is the subfolder name and the image is the file path.

    Files are checked cheaply now (extension, non-empty, readable header); pixels are decoded later.
    Hidden files (.DS_Store and the like) are ignored.
    """
    root = Path(root)
    problems = _Problems(on_bad)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; pass a folder with one subfolder per class")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: has no class subfolders; put images in {root}/<class name>/")
    for stray in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
        problems.add(f"{stray}: file is not inside a class subfolder")

    examples: list[Example] = []
    class_names: list[str] = []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and not _hidden(p, class_dir))
        found = 0
        for path in files:
            problem = image_file_problem(path)
            if problem:
                problems.add(f"{path}: {problem}")
                continue
            examples.append(Example(image=path, label=class_dir.name))
            found += 1
        if found:
            class_names.append(class_dir.name)
        else:
            problems.add(f"{class_dir}: class folder has no usable images")
    if not examples:
        raise DataError(f"{root}: no usable images in its class subfolders{_first(problems.lines)}")
    return Dataset(examples=examples, name=root.name, class_names=class_names, problems=problems.lines)


def _hidden(path: Path, base: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(base).parts)


# ----- tables -----


def read_table(
    path: str | Path,
    image_col: str | None = None,
    text_col: str | None = None,
    text_b_col: str | None = None,
    label_col: str | None = None,
    group_col: str | None = None,
    on_bad: str = "skip",
) -> Dataset:
    """A CSV, TSV or JSONL table (optionally .gz/.bz2), one example per row.

    Only the named columns are read, and each must be non-empty in a row for the row to be used.
    With no column named, they are picked from the header by name (`columns_from_names`).
    Image paths are relative to the table's folder (absolute paths are kept).
    """
    path = Path(path)
    columns = {"image": image_col, "text": text_col, "text_b": text_b_col, "label": label_col, "group": group_col}
    columns = {field: col for field, col in columns.items() if col is not None}
    fmt = table_format(path)
    if fmt is None:
        raise DataError(f"{path}: unknown table type; use .csv, .tsv or .jsonl (optionally .gz or .bz2)")
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path")

    problems = _Problems(on_bad)
    examples: list[Example] = []
    with _open_text(path) as handle:
        rows = _jsonl_rows(path, handle, problems) if fmt == "jsonl" else _delimited_rows(path, handle, fmt, problems)
        available = next(rows)  # the first item is the list of column names
        if not columns:
            columns = columns_from_names(path, available)
        missing = [f"{field}: '{col}'" for field, col in columns.items() if col not in available]
        if missing:
            raise DataError(f"{path}: column(s) {', '.join(missing)} not found; available columns: {', '.join(available)}")
        for where, row in rows:
            example = _row_to_example(row, columns, path.parent, where, problems)
            if example is not None:
                examples.append(example)
    if not examples:
        raise DataError(f"{path}: no usable rows{_first(problems.lines)}")
    return Dataset(examples=examples, name=path.name, problems=problems.lines)


# Column names (lower case, '-' and ' ' read as '_') that say what a column holds, for tables read without
# --image-col/--text-col/--label-col. Pairs (--text-b-col) and groups are always named explicitly.
COLUMN_NAMES = {
    "image": ("image", "images", "img", "image_path", "image_file", "path", "file", "filename", "file_name"),
    "text": ("text", "texts", "sentence", "review", "content", "document", "caption", "query", "question", "utterance"),
    "label": ("label", "labels", "class", "class_name", "category", "target", "y"),
}


def columns_from_names(path: str | Path, available: list[str]) -> dict[str, str]:
    """{field: column} for the columns whose names say what they hold (see COLUMN_NAMES).

    Two candidates for one field, or none at all, is a one-line DataError listing the columns."""
    picked: dict[str, str] = {}
    for field, names in COLUMN_NAMES.items():
        found = [col for col in available if col.strip().lower().replace("-", "_").replace(" ", "_") in names]
        if len(found) > 1:
            raise DataError(
                f"{path}: columns {', '.join(repr(c) for c in found)} could each be the {field}; "
                f"name the {field} column (columns: {', '.join(available)})",
                topic=f"column:{field}",
            )
        if found:
            picked[field] = found[0]
    if not picked:
        raise DataError(
            f"{path}: no column is named like an image, text or label ({', '.join(available)}); "
            "name the columns to read",
            topic="columns",
        )
    return picked


def pick_columns(path: str | Path) -> dict[str, str]:
    """The columns `read_table` would pick for a table read without naming any (reads the header only)."""
    path = Path(path)
    fmt = table_format(path)
    if fmt is None or not path.is_file():
        return {}
    with _open_text(path) as handle:
        rows = _jsonl_rows(path, handle, _Problems("skip")) if fmt == "jsonl" else _delimited_rows(path, handle, fmt, _Problems("skip"))
        return columns_from_names(path, next(rows))


def table_format(path: str | Path) -> str | None:
    """'csv', 'tsv' or 'jsonl' from the file name (a .gz/.bz2 suffix is looked through), else None."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    return TABLE_FORMATS.get(suffixes[-1]) if suffixes else None


def _open_text(path: Path) -> IO[str]:
    opener = COMPRESSIONS.get(path.suffix.lower(), open)
    # utf-8-sig drops the byte-order mark that spreadsheet programs put before the first column name.
    return opener(path, "rt", encoding="utf-8-sig", newline="")


def _delimited_rows(path: Path, handle: IO[str], fmt: str, problems: _Problems) -> Iterator[Any]:
    """Yields the header, then (where, row dict) per row; ragged rows are reported."""
    reader = csv.reader(handle, delimiter="\t" if fmt == "tsv" else ",")
    try:
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: table is empty (no header row); the first row must name the columns")
        header = [name.strip() for name in header]
        yield header
        for row in reader:
            if not row:
                continue  # a blank line holds no data
            where = f"{path}:{reader.line_num}"
            if len(row) != len(header):
                problems.add(f"{where}: row has {len(row)} fields but the header has {len(header)}")
                continue
            yield where, dict(zip(header, row))
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed {fmt.upper()} ({exc}); fix the quoting") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason}); save the table as UTF-8") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); the file is corrupt or truncated") from None


def _jsonl_rows(path: Path, handle: IO[str], problems: _Problems) -> Iterator[Any]:
    """Yields the union of keys, then (where, row dict) per line. Reads all lines first to know the keys."""
    rows: list[tuple[str, dict]] = []
    keys: dict[str, None] = {}
    try:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.add(f"{where}: not valid JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                problems.add(f"{where}: line is a JSON {type(row).__name__}, not an object")
                continue
            keys.update(dict.fromkeys(row))
            rows.append((where, row))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason}); save the table as UTF-8") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); the file is corrupt or truncated") from None
    if not keys:
        raise DataError(f"{path}: table has no JSON object lines; write one JSON object per line")
    yield list(keys)
    yield from rows


def _row_to_example(row: dict, columns: dict[str, str], folder: Path, where: str, problems: _Problems) -> Example | None:
    values: dict[str, str] = {}
    for field, col in columns.items():
        value = row.get(col)
        if isinstance(value, (dict, list)):
            problems.add(f"{where}: column '{col}' holds a JSON {type(value).__name__}, not a value")
            return None
        text = "" if value is None else str(value).strip()
        if not text:
            problems.add(f"{where}: column '{col}' is missing or empty")
            return None
        values[field] = text
    if "image" in values:
        image = folder / values["image"]  # an absolute path stays as it is
        problem = image_file_problem(image)
        if problem:
            problems.add(f"{where}: image {image}: {problem}")
            return None
        values["image"] = image
    return Example(**values)


# ----- dispatch -----


def load_dataset(
    spec: str,
    *,
    image_col: str | None = None,
    text_col: str | None = None,
    text_b_col: str | None = None,
    label_col: str | None = None,
    group_col: str | None = None,
    on_bad: str = "skip",
    limit: int | None = None,
) -> Dataset:
    """Read a dataset from a named dataset (sealkit/data/catalog.py), an image folder, a table, or an IDX images file.

    `limit` keeps a seeded (seed 0), label-stratified subset of at most `limit` examples, so a quick
    run still sees every class even when the source is sorted by class.
    """
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1, got {limit}")
    columns = {"image_col": image_col, "text_col": text_col, "text_b_col": text_b_col, "label_col": label_col, "group_col": group_col}
    named = [k for k, v in columns.items() if v is not None]

    if catalog.is_named(spec):
        if named:
            raise DataError(f"{spec} is a named dataset with fixed columns; drop {', '.join(named)}")
        dataset = catalog.load_named(spec)
    else:
        path = Path(spec)
        if not path.exists():
            raise DataError(f"{spec}: no such file or folder, and not a named dataset (named: {', '.join(catalog.dataset_names()) or 'none installed'})")
        if path.is_dir():
            if named:
                raise DataError(f"{spec} is an image folder (labels are subfolder names); drop {', '.join(named)}")
            dataset = read_image_folder(path, on_bad=on_bad)
        elif table_format(path) is not None:
            dataset = read_table(path, on_bad=on_bad, **columns)
        elif "idx" in path.name.lower():
            if named:
                raise DataError(f"{spec} is an IDX file (images and labels only); drop {', '.join(named)}")
            dataset = read_idx(path)
        else:
            raise DataError(f"{spec}: unknown dataset type; use a folder, .csv/.tsv/.jsonl (.gz/.bz2), an IDX file or a dataset name")
    if limit is not None:
        dataset = dataset.subset(limit, seed=0)
    return dataset


def _first(problems: list[str]) -> str:
    return f" ({len(problems)} items skipped, first: {problems[0]})" if problems else ""
