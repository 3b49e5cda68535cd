"""What an adapter is, without torch: the method and sizes (AdapterConfig) and the task (TaskSpec).

Both are plain dataclasses stored as JSON in the adapter file. The torch trainer (sealkit/train)
and the numpy runtime (sealkit/runtime/task.py) read the same objects, so they cannot drift.
Never imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sealkit.errors import AdapterError

METHODS = ("output", "dga", "lga")
TASKS = ("classify", "retrieve")
HEADS = ("text", "linear", "none")


def _build(cls, data: Any, what: str):
    """`cls` from a JSON object, ignoring unknown keys; a missing required key is an AdapterError."""
    if not isinstance(data, dict):
        raise AdapterError(f"the adapter's {what} must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError:
        missing = sorted(f.name for f in fields(cls) if f.name not in data)
        raise AdapterError(f"the adapter's {what} lacks {', '.join(missing) or 'required fields'}") from None


@dataclass
class AdapterConfig:
    """Which adapters exist and how big they are. `method`: output only, + input adapters (dga), + entries (lga)."""

    method: str = "dga"
    # The image input adapter, by method unless given (docs/results.md, mnist): dga adds one learnable pattern to
    # every image (the prompt; it reached half of full fine-tuning's gain where the conv net kept its start), lga keeps
    # a residual 3x3 conv net (with the prompt lga tied at 150 steps and trailed at 600).
    image_width: int | None = None  # hidden channels of the conv net; 0: none. Unset: 0 with the prompt, else 16
    text_rank: int = 32  # bottleneck of the per-token text input adapter
    text_prompts: int = 0  # learnable prompt tokens inserted after the first token of every text
    output_hidden: int = -1  # hidden width of the residual output MLP; -1: sized to ~0.5% of the tower
    shared_dim: int = 128  # common space when the two towers' outputs differ in width
    prompt_init_std: float = 0.02
    image_dilations: tuple[int, ...] = (1,)  # one residual conv branch per dilation, summed; (1, 2): multi-scale
    text_context: int = 0  # kernel of a zero-initialised depthwise convolution across tokens; 0: none (per-token only)
    image_prompt: bool | None = None  # a learnable pattern the size of the seal's input, added to every image. Unset: dga only

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise AdapterError(f"unknown method {self.method!r}; use one of {', '.join(METHODS)}")
        for name in ("text_rank", "shared_dim"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise AdapterError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.text_prompts, int) or self.text_prompts < 0:
            raise AdapterError(f"text_prompts must be 0 or more, got {self.text_prompts!r}")
        if not isinstance(self.output_hidden, int) or self.output_hidden < -1:
            raise AdapterError(f"output_hidden must be -1 (automatic), 0 (none) or a width, got {self.output_hidden!r}")
        if self.image_prompt is None:
            self.image_prompt = self.method == "dga"
        if self.image_width is None:
            self.image_width = 0 if self.image_prompt else 16
        if not isinstance(self.image_prompt, bool):
            raise AdapterError(f"image_prompt must be true or false, got {self.image_prompt!r}")
        if not isinstance(self.image_width, int) or isinstance(self.image_width, bool) or self.image_width < 0:
            raise AdapterError(f"image_width must be a positive integer (or 0 with image_prompt), got {self.image_width!r}")
        if self.image_width == 0 and not self.image_prompt:
            raise AdapterError("image_width 0 leaves the image input adapter empty: keep the image prompt or give a width of 1 or more (--image-width 16)")
        self.image_dilations = check_dilations(self.image_dilations)
        if self.image_width == 0 and self.image_dilations != (1,):
            raise AdapterError(f"image_dilations {list(self.image_dilations)} shape a conv net, and image_width 0 has none: give a width too (--image-width 16)")
        if not isinstance(self.text_context, int) or not (self.text_context == 0 or (self.text_context >= 3 and self.text_context % 2 == 1)):
            raise AdapterError(f"text_context must be 0 (none) or an odd kernel size of 3 or more, got {self.text_context!r}")

    @property
    def has_input_adapters(self) -> bool:
        return self.method in ("dga", "lga")

    @property
    def has_entries(self) -> bool:
        return self.method == "lga"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        if isinstance(data, dict):  # written before the prompt existed: the conv net alone, as it was trained
            data = {"image_prompt": False, "image_width": 16, **data}
        return _build(cls, data, "config")


def check_dilations(value: Any) -> tuple[int, ...]:
    """The image adapter's dilations as a sorted tuple (JSON stores a list); distinct positive integers."""
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in value):
        raise AdapterError(f"image_dilations must be a non-empty list of positive integers, got {value!r}")
    if len(set(value)) != len(value):
        raise AdapterError(f"image_dilations lists a dilation twice: {list(value)}")
    return tuple(sorted(value))


@dataclass
class TaskSpec:
    """What the task is, in terms of the seal's towers.

    classify: `query_tower` encodes the inputs; head "text" scores them against class-name prompts
    encoded by `key_tower`, head "linear" uses a linear layer. retrieve: `query_field` items
    (through `query_tower`) are matched with `key_field` items (through `key_tower`).
    """

    task: str
    query_tower: str
    query_field: str
    key_tower: str | None = None
    key_field: str | None = None
    head: str = "none"
    class_names: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.query_tower, str) or not self.query_tower or not isinstance(self.query_field, str):
            raise AdapterError("the task names no query tower and field")
        if self.key_tower is not None and not isinstance(self.key_tower, str):
            raise AdapterError(f"the task's key_tower must be a tower name, got {self.key_tower!r}")
        for name in ("class_names", "templates"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise AdapterError(f"the task's {name} must be a list of strings")
        if self.task not in TASKS:
            raise AdapterError(f"unknown task {self.task!r}; use one of {', '.join(TASKS)}")
        if self.head not in HEADS:
            raise AdapterError(f"unknown head {self.head!r}; use one of {', '.join(HEADS)}")
        if self.task == "classify" and self.head == "none":
            raise AdapterError("a classify task needs a head (text or linear)")

    @property
    def towers(self) -> list[str]:
        """The seal towers the task uses, query tower first, each once."""
        return list(dict.fromkeys(t for t in (self.query_tower, self.key_tower) if t))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        return _build(cls, data, "task")


def auto_hidden(tower_parameters: int, dim: int, share: float = 0.005) -> int:
    """A residual MLP width giving about `share` of the tower's parameters (between 16 and 256)."""
    width = int(share * tower_parameters / (2 * dim))
    return max(16, min(256, 8 * round(width / 8)))
