"""The seal manifest: the plaintext description of what a device may know about a sealed backbone.

Plain dataclasses with to_dict/from_dict so the JSON layout in docs/format.md is explicit.
Never imports torch or onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sealkit.errors import SealFormatError

FORMAT_NAME = "sealkit-seal"
FORMAT_VERSION = 2  # written; 2 binds the manifest into every blob's AES-GCM associated data
READABLE_VERSIONS = (1, 2)  # 1: blobs bound to the seal's salt and their name only
DYNAMIC_DIMS = ("batch", "sequence")
ENTRY_KINDS = ("add", "scale_shift", "residual", "prompt")
EXPOSURES = ("dark", "light")
# What a device learns from each entry kind, beyond a dark seal (shown by `sealkit inspect`; docs/format.md).
ENTRY_REVEALS = {
    "add": "the channel count there; gradients: the loss gradient at that place, summed over batch and positions",
    "scale_shift": "the channel count there; gradients: per-channel sums of activation x loss gradient (how each channel correlates with the loss)",
    "residual": "the channel count there; gradients: sums of (activation projected by the device's down matrix) x loss gradient, "
    "so a device using batch 1 can estimate `rank` projections of the activation; the activation itself stays in the graph",
    "prompt": "the hidden width of the block; gradients of tokens that attend to (and are attended by) the sequence there",
}


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output. Shape entries are ints (fixed) or dimension names (dynamic)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"
    differentiable: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(d["name"], tuple(d["shape"]), d.get("dtype", "float32"), bool(d.get("differentiable", False)))


@dataclass(frozen=True)
class EntryPointSpec:
    """A learnable tensor injected inside the backbone (LightGray-box); its kind says how it enters.

    add: a delta of `shape`; scale_shift: [2, *channels] (scale, shift); residual: [2, rank, channels]
    (down and up of a bottleneck adapter computed inside the graph); prompt: [tokens, width].
    """

    name: str
    kind: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EntryPointSpec:
        return cls(d["name"], d["kind"], tuple(int(s) for s in d["shape"]))


@dataclass
class TowerSpec:
    """One encoder of the seal (an image or a text tower) and the graphs that run it."""

    modality: str
    inputs: list[TensorSpec]
    output: TensorSpec
    preprocessing: dict[str, Any]
    graphs: dict[str, str | None]
    parameters: int = 0
    entry_points: list[EntryPointSpec] = field(default_factory=list)
    embed: dict[str, TensorSpec] | None = None
    # residual seals only: per forward_saved graph, the intermediate activations it hands the device
    residuals: dict[str, list[TensorSpec]] = field(default_factory=dict)

    @property
    def has_residual_graphs(self) -> bool:
        """Whether the tower can train with one forward per step (forward_saved + backward graphs)."""
        return bool(self.graphs.get("forward_saved")) and bool(self.graphs.get("backward"))

    @property
    def differentiable_inputs(self) -> list[TensorSpec]:
        return [spec for spec in self.inputs if spec.differentiable]

    def to_dict(self) -> dict[str, Any]:
        d = {
            "modality": self.modality,
            "parameters": self.parameters,
            "inputs": [s.to_dict() for s in self.inputs],
            "output": self.output.to_dict(),
            "entry_points": [e.to_dict() for e in self.entry_points],
            "embed": None if self.embed is None else {k: v.to_dict() for k, v in self.embed.items()},
            "preprocessing": self.preprocessing,
            "graphs": self.graphs,
        }
        if self.residuals:  # absent from plain seals, so their manifests (and seal ids) are unchanged
            d["residuals"] = {graph: [s.to_dict() for s in specs] for graph, specs in self.residuals.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TowerSpec:
        embed = d.get("embed")
        return cls(
            modality=d["modality"],
            inputs=[TensorSpec.from_dict(s) for s in d["inputs"]],
            output=TensorSpec.from_dict(d["output"]),
            preprocessing=dict(d.get("preprocessing") or {}),
            graphs=dict(d["graphs"]),
            parameters=int(d.get("parameters", 0)),
            entry_points=[EntryPointSpec.from_dict(e) for e in d.get("entry_points", [])],
            embed=None if embed is None else {k: TensorSpec.from_dict(v) for k, v in embed.items()},
            residuals={graph: [TensorSpec.from_dict(s) for s in specs] for graph, specs in (d.get("residuals") or {}).items()},
        )


@dataclass(frozen=True)
class BlobRecord:
    """Where one blob lies in the blob region, and the hash of its stored (possibly encrypted) bytes."""

    name: str
    offset: int
    length: int
    sha256: str
    nonce: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BlobRecord:
        record = cls(str(d["name"]), int(d["offset"]), int(d["length"]), str(d["sha256"]), d.get("nonce"))
        if record.offset < 0 or record.length < 0:
            raise ValueError(f"blob '{record.name}' has a negative offset or length")
        return record


@dataclass
class Manifest:
    name: str
    exposure: str
    towers: dict[str, TowerSpec]
    blobs: list[BlobRecord]
    producer: dict[str, str]
    encryption: dict[str, str] | None = None
    seal_id: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def encrypted(self) -> bool:
        return self.encryption is not None

    def blob(self, name: str) -> BlobRecord:
        for record in self.blobs:
            if record.name == name:
                return record
        raise SealFormatError(f"the seal has no blob named '{name}'; it was written by an incompatible tool")

    def to_dict(self, with_id: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "producer": self.producer,
            "name": self.name,
            "exposure": self.exposure,
            "towers": {k: t.to_dict() for k, t in self.towers.items()},
            "encryption": self.encryption,
            "blobs": [b.to_dict() for b in self.blobs],
        }
        if with_id:
            d["seal_id"] = self.seal_id
        return d

    def compute_id(self) -> str:
        """The content hash that identifies this seal: adapters are bound to it."""
        return hashlib.sha256(canonical_json(self.to_dict(with_id=False))).hexdigest()[:32]

    def signed_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    def bound_digest(self) -> str:
        """SHA-256 of everything in the manifest but its blob list and id: format 2 binds it into the
        encryption, so a manifest edited after sealing (and given a recomputed id) no longer decrypts.
        (The blob list cannot be bound: it holds the ciphertexts' hashes; they are checked on read.)"""
        bound = self.to_dict(with_id=False)
        bound.pop("blobs")
        return hashlib.sha256(canonical_json(bound)).hexdigest()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
            raise SealFormatError("the header is not a sealkit manifest; is this a seal file?")
        version = d.get("format_version")
        if isinstance(version, bool) or version not in READABLE_VERSIONS:
            raise SealFormatError(f"seal format version {version} is not supported by this sealkit (reads {', '.join(map(str, READABLE_VERSIONS))}); upgrade sealkit or re-export the seal")
        try:
            return _checked(cls(
                name=str(d.get("name", "")),
                exposure=d["exposure"],
                towers={k: TowerSpec.from_dict(t) for k, t in d["towers"].items()},
                blobs=[BlobRecord.from_dict(b) for b in d["blobs"]],
                producer=dict(d.get("producer") or {}),
                encryption=d.get("encryption"),
                seal_id=d.get("seal_id", ""),
                format_version=version,
            ))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SealFormatError(f"the seal manifest is malformed ({type(exc).__name__}: {exc}); re-export the seal") from None


def _checked(manifest: Manifest) -> Manifest:
    """Raise ValueError for fields of the wrong type, which would otherwise fail later, far from the cause."""
    if manifest.encryption is not None and not (isinstance(manifest.encryption, dict) and all(isinstance(v, str) for v in manifest.encryption.values())):
        raise ValueError("encryption must be null or an object of strings")
    if not isinstance(manifest.exposure, str) or not isinstance(manifest.seal_id, str):
        raise ValueError("exposure and seal_id must be strings")
    for name, tower in manifest.towers.items():
        if not isinstance(tower.modality, str) or not all(isinstance(g, str) or g is None for g in tower.graphs.values()):
            raise ValueError(f"tower '{name}' has a non-string modality or graph name")
        for spec in [*tower.inputs, tower.output, *(tower.embed or {}).values()]:
            if not isinstance(spec.name, str) or not isinstance(spec.dtype, str) or not all(isinstance(s, (int, str)) and not isinstance(s, bool) for s in spec.shape):
                raise ValueError(f"tower '{name}' has a malformed tensor spec")
    return manifest


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
