"""Named datasets: what `load_dataset("NAME")` accepts besides paths.

The core data package knows no names, paths or corpora itself. Installed packages add datasets
through the `sealkit.datasets` entry-point group: each entry point is a function returning
`NamedDataset`s. sealkit's own packaged corpora (sealkit/corpora) register that way too.
Never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from sealkit.data.dataset import Dataset
from sealkit.errors import DataError

ENTRY_POINT_GROUP = "sealkit.datasets"


@dataclass(frozen=True)
class NamedDataset:
    """A dataset by name: 'family:view' or 'name', what it is, and how to read it."""

    name: str
    description: str
    load: Callable[[], Dataset]

    @property
    def family(self) -> str:
        return self.name.split(":", 1)[0]


_catalog: dict[str, NamedDataset] | None = None


def _entries() -> dict[str, NamedDataset]:
    global _catalog
    if _catalog is None:
        found: dict[str, NamedDataset] = {}
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            for named in entry.load()():
                found[named.name] = named
        _catalog = found
    return _catalog


def dataset_names() -> list[str]:
    return list(_entries())


def describe_datasets() -> list[str]:
    """One 'name: what it is' line per named dataset, for help text."""
    return [f"{named.name}: {named.description}" for named in _entries().values()]


def is_named(spec: str) -> bool:
    """True for a known name, or for an unknown view of a known family (so it gets a helpful error)."""
    family = spec.split(":", 1)[0]
    return spec in _entries() or (":" in spec and any(named.family == family for named in _entries().values()))


def load_named(spec: str) -> Dataset:
    named = _entries().get(spec)
    if named is None:
        family = spec.split(":", 1)[0]
        views = [n.name for n in _entries().values() if n.family == family] or dataset_names()
        raise DataError(f"unknown named dataset '{spec}'; use one of: {', '.join(views)}")
    dataset = named.load()
    dataset.name = spec
    return dataset
