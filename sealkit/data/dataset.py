"""The in-memory dataset model: a list of examples plus seeded splitting and subsetting.

This module never imports torch; it is shared by training and the torch-free inference path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sealkit.errors import DataError

FIELDS = ("image", "text", "text_b", "label", "group")

# What to tell the user when a field is missing (the CLI adds the option that fills it).
_FIELD_HINTS = {
    "image": "name the table's image column, or use an image folder or IDX file",
    "text": "name the table's text column",
    "text_b": "name the table's second text column",
    "label": "name the table's label column, or use a labeled source",
    "group": "name the table's group column",
}


@dataclass
class Example:
    """One item. Which fields are set depends on the source; `Dataset.require` checks a task's needs."""

    image: str | Path | np.ndarray | None = None  # a file path, or an HxW / HxWx3 uint8 array
    text: str | None = None
    text_b: str | None = None  # the second text of a pair (retrieval: query/target)
    label: str | None = None
    group: str | None = None  # e.g. a movie name, so splits can keep a group on one side


@dataclass
class Dataset:
    """A list of examples with a fixed label order.

    `class_names` fixes the label -> id mapping; when not given it is the sorted unique labels.
    Subsets and splits keep the parent's `class_names`, so ids stay the same on both sides.
    `problems` has one line per item the reader skipped (path + reason): nothing is dropped silently.
    """

    examples: list[Example]
    name: str = ""
    class_names: list[str] | None = None
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        present = {ex.label for ex in self.examples if ex.label is not None}
        if self.class_names is None:
            if present:
                self.class_names = sorted(present)
            return
        self.class_names = list(self.class_names)
        if len(set(self.class_names)) != len(self.class_names):
            raise DataError(f"dataset '{self.name}': class_names has duplicates {self.class_names}; list each class once")
        unknown = sorted(present - set(self.class_names))
        if unknown:
            raise DataError(
                f"dataset '{self.name}': labels {unknown[:5]} are not in class_names {self.class_names}; "
                "add them to class_names or fix the labels"
            )

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]

    # ----- views -----

    @property
    def labels(self) -> list[str | None]:
        return [ex.label for ex in self.examples]

    @property
    def label_ids(self) -> np.ndarray:
        """Labels as int64 ids into `class_names`; every example must have a label."""
        self.require("label", task="label ids")
        index = {name: i for i, name in enumerate(self.class_names or [])}
        return np.array([index[ex.label] for ex in self.examples], dtype=np.int64)

    @property
    def has_images(self) -> bool:
        return self._all_have("image")

    @property
    def has_texts(self) -> bool:
        return self._all_have("text")

    @property
    def has_text_b(self) -> bool:
        return self._all_have("text_b")

    @property
    def has_labels(self) -> bool:
        return self._all_have("label")

    @property
    def has_groups(self) -> bool:
        return self._all_have("group")

    def _all_have(self, name: str) -> bool:
        return bool(self.examples) and all(getattr(ex, name) is not None for ex in self.examples)

    # ----- checks -----

    def require(self, *fields: str, task: str) -> None:
        """Fail early, with a fix, when the dataset is empty or lacks a field `task` needs on any example."""
        where = f"{task}: dataset '{self.name}'" if self.name else f"{task}: the dataset"
        if not self.examples:
            skipped = f" ({len(self.problems)} items were skipped, first: {self.problems[0]})" if self.problems else ""
            raise DataError(f"{where} is empty{skipped}; point it at a source with at least one usable example")
        for name in fields:
            if name not in FIELDS:
                raise ValueError(f"unknown example field {name!r}; expected one of {FIELDS}")
            missing = [i for i, ex in enumerate(self.examples) if getattr(ex, name) is None]
            if missing:
                raise DataError(
                    f"{where} has no {name} on {len(missing)} of {len(self.examples)} examples "
                    f"(first: #{missing[0]}); {_FIELD_HINTS[name]}",
                    topic=f"column:{name}",
                )

    # ----- seeded selection -----

    def subset(self, n: int, seed: int) -> Dataset:
        """A seeded random subset of `n` examples (all of them when n >= len), in the original order.

        When every example has a label the subset is stratified: each class keeps its share.
        """
        if n < 1:
            raise DataError(f"dataset '{self.name}': subset size must be at least 1, got {n}")
        if n >= len(self.examples):
            return self._take(list(range(len(self.examples))))
        rng = np.random.default_rng(seed)
        return self._take(self._pick(n, rng))

    def split(self, fraction: float, seed: int, by_group: bool = False) -> tuple[Dataset, Dataset]:
        """Split into (first, rest): `first` holds about `fraction` of the examples, chosen with `seed`.

        by_group=True keeps every example of a group on one side (no movie in both train and test).
        Otherwise the split is stratified by label when every example has one. Each side keeps the
        original order and the parent's class_names.
        """
        if not 0.0 < fraction < 1.0:
            raise DataError(f"dataset '{self.name}': split fraction must be between 0 and 1 (exclusive), got {fraction}")
        self.require(task="split")
        if len(self.examples) < 2:
            raise DataError(f"dataset '{self.name}' has 1 example; a split needs at least 2")
        rng = np.random.default_rng(seed)
        target = min(max(int(round(fraction * len(self.examples))), 1), len(self.examples) - 1)
        first = self._pick_groups(target, rng) if by_group else self._pick(target, rng)
        chosen = set(first)
        rest = [i for i in range(len(self.examples)) if i not in chosen]
        return self._take(first), self._take(rest)

    def _pick(self, k: int, rng: np.random.Generator) -> list[int]:
        """k sorted indices, stratified by label when every example has one."""
        if not self.has_labels:
            return sorted(rng.choice(len(self.examples), size=k, replace=False).tolist())
        by_class: dict[str, list[int]] = {}
        for i, ex in enumerate(self.examples):
            by_class.setdefault(ex.label, []).append(i)
        # Largest-remainder allocation: each class gets its proportional share of k, rounded so shares sum to k.
        classes = sorted(by_class)
        exact = np.array([len(by_class[c]) * k / len(self.examples) for c in classes])
        quota = np.floor(exact).astype(int)
        order = np.argsort(-(exact - quota), kind="stable")
        for j in order[: k - int(quota.sum())]:
            quota[j] += 1
        picked: list[int] = []
        for c, q in zip(classes, quota):
            picked += rng.permutation(by_class[c])[:q].tolist()
        return sorted(picked)

    def _pick_groups(self, target: int, rng: np.random.Generator) -> list[int]:
        """Whole groups, in seeded random order, until about `target` examples are taken."""
        self.require("group", task="split by group")
        members: dict[str, list[int]] = {}
        for i, ex in enumerate(self.examples):
            members.setdefault(ex.group, []).append(i)
        if len(members) < 2:
            raise DataError(f"dataset '{self.name}' has only 1 group; a split by group needs at least 2 groups")
        groups = [sorted(members)[j] for j in rng.permutation(len(members))]
        picked: list[int] = []
        for g in groups[:-1]:  # the last group always goes to the other side, so neither side is empty
            if picked and abs(len(picked) + len(members[g]) - target) > abs(len(picked) - target):
                break
            picked += members[g]
        return sorted(picked)

    def _take(self, indices: list[int]) -> Dataset:
        return Dataset(
            examples=[self.examples[i] for i in indices],
            name=self.name,
            class_names=None if self.class_names is None else list(self.class_names),
            problems=list(self.problems),
        )
