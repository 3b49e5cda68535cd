"""Open a seal on a device and run its towers: forward, VJP and (text) token embedding, on numpy.

The seal is verified, decrypted in memory and loaded with `InferenceSession(bytes)`; plaintext never
touches the disk. Every graph of a seal refers to one shared weight pool, handed to onnxruntime as
external initializers, so the forward and VJP sessions use the same weight memory.
Never imports torch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from sealkit.data.text import TextEncoder
from sealkit.errors import InputError, SealKeyError, SealkitError
from sealkit.runtime.heap import mapped_allocations, release_free_heap
from sealkit.runtime.providers import CUDA, default_providers, resolve_providers, session_providers  # noqa: F401  (default_providers: old import path)
from sealkit.seal import crypto
from sealkit.seal.container import SealFile, read_seal
from sealkit.seal.manifest import Manifest, TensorSpec, TowerSpec
from sealkit.seal.obfuscate import WEIGHTS_BLOB, ExternalWeight, external_weights, weights_as_inputs

# sealkit never sends data anywhere; onnxruntime's telemetry (Windows ETW events) is switched off too
ort.disable_telemetry_events()

DEFAULT_CHUNK = 64
# graphs that serve predictions; the others (vjp, forward_saved, backward) only run while training
INFERENCE_GRAPHS = ("forward", "forward_entries", "embed")
# what onnxruntime raises when a graph cannot run on inputs that passed the manifest's shape checks,
# e.g. a sequence longer than the model's position table or a token id outside the vocabulary
_RUN_ERRORS = (_ort_state.Fail, _ort_state.InvalidArgument, _ort_state.RuntimeException)


@dataclass
class VJPResult:
    """What the VJP graph returns: the output, and gradients for differentiable inputs and entry points."""

    output: np.ndarray
    input_grads: dict[str, np.ndarray]
    entry_grads: dict[str, np.ndarray]


@dataclass
class Residuals:
    """What `Tower.forward_for_backward` keeps for `Tower.backward`: per batch chunk, the backward's feeds.

    Those feeds are the residuals (intermediate activations the forward_saved graph returned) and
    the inputs the backward graph reads; they live in the device's memory between the two calls.
    """

    tower: str
    kind: str  # "" or "_entries": which pair of graphs made them
    sizes: list[int]  # batch rows per chunk
    chunks: list[dict[str, np.ndarray]]

    @property
    def batch(self) -> int:
        return sum(self.sizes)

    @property
    def nbytes(self) -> int:
        """Bytes held by the saved intermediate activations (not counting the inputs they share)."""
        return sum(v.nbytes for chunk in self.chunks for k, v in chunk.items() if k.startswith("residual_"))


class _WeightPool:
    """The decrypted weight bytes and one OrtValue per weight, shared by every session of the seal."""

    def __init__(self, data: bytes):
        self._array = np.frombuffer(data, dtype=np.uint8)
        self._values: dict[str, ort.OrtValue] = {}

    def values_for(self, weights: list[ExternalWeight]) -> dict[str, ort.OrtValue]:
        values = {}
        for weight in weights:
            if weight.name not in self._values:
                view = self._array[weight.offset : weight.offset + weight.length].view(weight.dtype).reshape(weight.shape)
                self._values[weight.name] = ort.OrtValue.ortvalue_from_numpy(view)
            values[weight.name] = self._values[weight.name]
        return values

    @property
    def nbytes(self) -> int:
        return int(self._array.nbytes)


class _Graph:
    """One onnxruntime session and, in shared mode, the weight OrtValues fed to it on every run."""

    def __init__(self, session: ort.InferenceSession, weight_feeds: dict[str, ort.OrtValue], training: bool = False):
        self.session = session
        self.weight_feeds = weight_feeds
        self.output_names = [o.name for o in session.get_outputs()]
        self.input_names = [i.name for i in session.get_inputs() if i.name not in weight_feeds]
        self.training = training
        self._first_run = training

    def run(self, feeds: dict[str, np.ndarray], release_heap: bool = True) -> list[np.ndarray]:
        """Run the session; a training graph first returns the heap's free memory to the system,
        unless `release_heap` is False (a later chunk of the same batch: nothing ran in between)."""
        if not self.training:
            return self._run(feeds)
        if release_heap:
            release_free_heap()  # what torch freed since the last run (sealkit/runtime/heap.py)
        if not self._first_run:
            return self._run(feeds)
        # a first run has no planned memory block yet; image batches keep their shape, so that is
        # the run that sets the peak
        with mapped_allocations():
            outputs = self._run(feeds)
        self._first_run = False
        return outputs

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if not self.weight_feeds:
            return self.session.run(None, feeds)
        values = dict(self.weight_feeds)
        for name, array in feeds.items():
            values[name] = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))
        return [v.numpy() for v in self.session.run_with_ort_values(self.output_names, values)]


class Tower:
    """One tower of an opened seal. Sessions are created on first use."""

    def __init__(self, name: str, spec: TowerSpec, seal: Seal):
        self.name = name
        self.spec = spec
        self._seal = seal
        self._graphs: dict[str, _Graph] = {}
        self._text_encoder: TextEncoder | None = None
        self._lock = threading.Lock()

    # --- graphs -------------------------------------------------------------------------------
    def _graph(self, graph: str) -> _Graph:
        with self._lock:
            if graph not in self._graphs:
                blob = self.spec.graphs.get(graph)
                if not blob:
                    raise SealkitError(f"tower '{self.name}' has no {graph} graph")
                self._graphs[graph] = self._seal._load_graph(blob, self.spec.modality)
            return self._graphs[graph]

    def _run(self, kind: str, feeds: dict[str, np.ndarray], first_chunk: bool = True) -> list[np.ndarray]:
        graph = self._graph(kind)
        try:
            return graph.run(feeds, release_heap=first_chunk)
        except _RUN_ERRORS as exc:
            shapes = ", ".join(f"'{name}' {list(value.shape)}" for name, value in feeds.items())
            reason = (str(exc).split("Status Message:")[-1].strip().splitlines() or ["unknown"])[0][:240]
            raise InputError(f"tower '{self.name}' cannot run its {kind} graph on inputs {shapes}: {reason}") from None

    @property
    def entry_points(self):
        return self.spec.entry_points

    @property
    def text_encoder(self) -> TextEncoder:
        """The seal's own tokenizer (text towers), read from the seal on first use."""
        with self._lock:
            if self._text_encoder is None:
                if self.spec.modality != "text":
                    raise SealkitError(f"tower '{self.name}' takes images, not text")
                pre = self.spec.preprocessing
                self._text_encoder = TextEncoder.from_json(self._seal.blob(pre["tokenizer"]).decode("utf-8"), int(pre.get("max_length", 128)))
            return self._text_encoder

    @property
    def output_dim(self) -> int:
        return int(self.spec.output.shape[-1])

    # --- checks -------------------------------------------------------------------------------
    def _check(self, spec: TensorSpec, value: np.ndarray, sizes: dict[str, int]) -> None:
        if not isinstance(value, np.ndarray):
            raise InputError(f"input '{spec.name}' of tower '{self.name}' must be a numpy array, got {type(value).__name__}")
        if value.dtype != np.dtype(spec.dtype):
            raise InputError(f"input '{spec.name}' of tower '{self.name}' must be {spec.dtype}, got {value.dtype}; cast it with .astype(np.{spec.dtype})")
        if value.ndim != len(spec.shape):
            raise InputError(f"input '{spec.name}' of tower '{self.name}' must have shape {_fmt(spec.shape)}, got {list(value.shape)}")
        for axis, (want, got) in enumerate(zip(spec.shape, value.shape)):
            if isinstance(want, str):
                if sizes.setdefault(want, got) != got:
                    raise InputError(f"input '{spec.name}' of tower '{self.name}' has {want} size {got} on axis {axis}, but other inputs have {sizes[want]}")
                if got == 0:
                    raise InputError(f"input '{spec.name}' of tower '{self.name}' is empty on axis {axis} ({want})")
            elif want != got:
                raise InputError(f"input '{spec.name}' of tower '{self.name}' must have shape {_fmt(spec.shape)}, got {list(value.shape)}")

    def _feeds(self, inputs: Mapping[str, np.ndarray] | np.ndarray, entries: Mapping[str, np.ndarray] | None) -> tuple[dict[str, np.ndarray], int]:
        if isinstance(inputs, np.ndarray):
            if len(self.spec.inputs) != 1:
                raise InputError(f"tower '{self.name}' takes {len(self.spec.inputs)} inputs {[s.name for s in self.spec.inputs]}; pass a dict")
            inputs = {self.spec.inputs[0].name: inputs}
        sizes: dict[str, int] = {}
        feeds = {}
        for spec in self.spec.inputs:
            if spec.name not in inputs:
                raise InputError(f"tower '{self.name}' needs input '{spec.name}' (inputs: {[s.name for s in self.spec.inputs]})")
            self._check(spec, inputs[spec.name], sizes)
            feeds[spec.name] = inputs[spec.name]
        extra = set(inputs) - {s.name for s in self.spec.inputs}
        if extra:
            raise InputError(f"tower '{self.name}' has no input(s) {sorted(extra)} (inputs: {[s.name for s in self.spec.inputs]})")
        if entries:
            known = {ep.name: ep for ep in self.spec.entry_points}
            unknown = set(entries) - set(known)
            if unknown:
                raise InputError(f"tower '{self.name}' has no entry point(s) {sorted(unknown)}; the seal exposes {sorted(known) or 'none (a dark seal)'}")
            for name, ep in known.items():
                if name not in entries:
                    raise InputError(f"tower '{self.name}' needs a value for entry point '{name}' when any entry point is given")
                self._check(TensorSpec(name, ep.shape, "float32"), entries[name], {})
                feeds[name] = entries[name]
        return feeds, sizes["batch"]

    # --- public -------------------------------------------------------------------------------
    def forward(self, inputs: Mapping[str, np.ndarray] | np.ndarray, entries: Mapping[str, np.ndarray] | None = None, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
        """The tower's output for a batch. `entries` (light seals) are the entry-point tensors."""
        feeds, batch = self._feeds(inputs, entries)
        kind = "forward_entries" if entries else "forward"
        outputs = []
        for start in range(0, batch, chunk):
            outputs.append(self._run(kind, _slice(feeds, start, chunk, self._batched_names))[0])
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def vjp(
        self,
        inputs: Mapping[str, np.ndarray] | np.ndarray,
        cotangent: np.ndarray,
        entries: Mapping[str, np.ndarray] | None = None,
        chunk: int | None = None,
    ) -> VJPResult:
        """The output and the vector-Jacobian products of `cotangent` with the inputs and entry points.

        `chunk`: rows per graph run (default: `training_chunk`)."""
        feeds, batch = self._feeds(inputs, entries)
        chunk = chunk or self.training_chunk
        out_spec = self.spec.output
        self._check(TensorSpec(f"grad_{out_spec.name}", out_spec.shape, out_spec.dtype), cotangent, {"batch": batch})
        feeds[f"grad_{out_spec.name}"] = cotangent
        kind = "vjp_entries" if entries else "vjp"
        names = self._graph(kind).output_names
        batched = self._batched_names | {f"grad_{out_spec.name}"}
        parts: list[list[np.ndarray]] = []
        for start in range(0, batch, chunk):
            parts.append(self._run(kind, _slice(feeds, start, chunk, batched), first_chunk=start == 0))
        results = self._gather(names, parts)
        return self._vjp_result(results.pop(out_spec.name), results)

    def _gather(self, names: list[str], parts: list[list[np.ndarray]]) -> dict[str, np.ndarray]:
        """Join per-chunk graph outputs: batched ones are concatenated, entry-point gradients summed."""
        entry_grads = {f"grad_{ep.name}" for ep in self.spec.entry_points}
        results: dict[str, np.ndarray] = {}
        for i, name in enumerate(names):
            pieces = [p[i] for p in parts]
            if name in entry_grads:  # entry points are shared by the batch: their gradients add up
                results[name] = np.sum(pieces, axis=0) if len(pieces) > 1 else pieces[0]
            else:
                results[name] = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        return results

    def _vjp_result(self, output: np.ndarray, grads: dict[str, np.ndarray]) -> VJPResult:
        entry_names = {f"grad_{ep.name}": ep.name for ep in self.spec.entry_points}
        return VJPResult(
            output=output,
            input_grads={n[len("grad_") :]: v for n, v in grads.items() if n.startswith("grad_") and n not in entry_names},
            entry_grads={entry_names[n]: v for n, v in grads.items() if n in entry_names},
        )

    @property
    def training_chunk(self) -> int:
        """Rows per run of this tower's training graphs: the seal's `training_chunk` if set; on CUDA the
        whole batch; on the CPU TRAINING_CHUNKS, or one row per intra-op thread if that is more."""
        if self._seal.training_chunk:
            return self._seal.training_chunk
        if CUDA in self._seal.providers:
            return DEFAULT_CHUNK
        threads = self._seal.threads or os.cpu_count() or 1
        return max(TRAINING_CHUNKS.get(self.spec.modality, DEFAULT_CHUNK), threads)

    @property
    def has_residual_graphs(self) -> bool:
        """Whether this tower trains with one forward per step (`forward_for_backward` + `backward`)."""
        return self.spec.has_residual_graphs

    def forward_for_backward(
        self,
        inputs: Mapping[str, np.ndarray] | np.ndarray,
        entries: Mapping[str, np.ndarray] | None = None,
        chunk: int | None = None,
    ) -> tuple[np.ndarray, Residuals]:
        """The output, and the residuals `backward` needs: a training step's one forward.

        Needs a seal exported with residual graphs; the residuals stay in memory until dropped.
        `chunk`: rows per graph run (default: `training_chunk`); `backward` runs the same chunks.
        """
        if not self.has_residual_graphs:
            raise SealkitError(f"tower '{self.name}' has no forward_saved/backward graphs: its seal was exported without residuals; use vjp() instead")
        feeds, batch = self._feeds(inputs, entries)
        chunk = chunk or self.training_chunk
        suffix = "_entries" if entries else ""
        forward = self._graph(f"forward_saved{suffix}")
        backward_reads = set(self._graph(f"backward{suffix}").input_names)
        outputs, sizes, chunks = [], [], []
        for start in range(0, batch, chunk):
            part = _slice(feeds, start, chunk, self._batched_names)
            values = self._run(f"forward_saved{suffix}", part, first_chunk=start == 0)
            outputs.append(values[0])
            sizes.append(min(chunk, batch - start))
            saved = {name: value for name, value in part.items() if name in backward_reads}
            saved.update(zip(forward.output_names[1:], values[1:]))
            chunks.append(saved)
        output = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
        return output, Residuals(self.name, suffix, sizes, chunks)

    def backward(self, residuals: Residuals, cotangent: np.ndarray) -> VJPResult:
        """Gradients of `cotangent` . output w.r.t. the inputs and entry points, from saved residuals.

        The result's `output` is empty: the output came from `forward_for_backward`.
        """
        if not isinstance(residuals, Residuals) or residuals.tower != self.name:
            raise InputError(f"tower '{self.name}' needs the residuals its own forward_for_backward returned")
        out_spec = self.spec.output
        grad_name = f"grad_{out_spec.name}"
        self._check(TensorSpec(grad_name, out_spec.shape, out_spec.dtype), cotangent, {"batch": residuals.batch})
        kind = f"backward{residuals.kind}"
        parts, start = [], 0
        for size, saved in zip(residuals.sizes, residuals.chunks):
            parts.append(self._run(kind, {**saved, grad_name: cotangent[start : start + size]}, first_chunk=start == 0))
            start += size
        grads = self._gather(self._graph(kind).output_names, parts)
        return self._vjp_result(np.empty((0,), dtype=np.float32), grads)

    def embed_tokens(self, input_ids: np.ndarray) -> np.ndarray:
        """Token ids -> token embeddings (text towers): the input a text input adapter acts on."""
        if self.spec.embed is None:
            raise SealkitError(f"tower '{self.name}' is not a text tower; it has no token embedding graph")
        spec = self.spec.embed["input"]
        self._check(spec, input_ids, {})
        if input_ids.size and int(input_ids.min()) < 0:
            raise InputError(f"input '{spec.name}' of tower '{self.name}' has negative token ids (smallest {int(input_ids.min())}); tokenize with the seal's tokenizer")
        return self._run("embed", {spec.name: input_ids})[0]

    @property
    def _batched_names(self) -> set[str]:
        return {s.name for s in self.spec.inputs}


def _slice(feeds: dict[str, np.ndarray], start: int, chunk: int, batched: set[str]) -> dict[str, np.ndarray]:
    return {k: (v[start : start + chunk] if k in batched else v) for k, v in feeds.items()}


def _fmt(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


WEIGHT_MODES = ("auto", "shared", "copied")
# "auto" copies a graph's weights into its session up to this size. EfficientNet-Lite0 (13 MiB),
# 224 px, batch 8, 2 threads: the copied session's VJP took 338 ms against 534 ms shared, its forward
# 39 against 114 ms (onnxruntime prepacks constant convolution weights, never graph inputs); MiniLM
# (86 MiB with its embedding table) ran at the same speed either way, so big graphs stay shared.
AUTO_COPY_BYTES = 32 * 2**20

TRAINING_ARENA_MODES = ("auto", "on", "off")
# Whether training graphs (forward_saved, backward, vjp) get onnxruntime's CPU arena; inference
# graphs always do. Each session's arena keeps its own peak working memory for good, and a training
# step runs two sessions and holds residuals between them. Without it, tensors come from malloc, and
# the large ones from fresh mappings on every run. Measured at batch 8 (benchmarks/session_ab.py,
# benchmarks/train_memory.py, docs/benchmarks.md):
# - MiniLM (sequence 64): the residual step takes 0.83x the time with the arena, for 14 MiB more
#   peak in a dga run (40 in lga; full fine-tuning adds 672).
# - EfficientNet-Lite0 (224 px): 0.53x the time, but dga's peak goes from 337 to 828 MiB, 1.3x full
#   fine-tuning's (634).
# "auto": on for text towers, off for image towers. Image towers now run their batch in chunks
# (TRAINING_CHUNKS), and the arena still costs them memory: a dga run in chunks of 2 rows peaked at
# 387 MiB with it against 229 without (full fine-tuning: 646), so it stays off.


# Rows of a batch per run of a training graph on the CPU ("auto"; on CUDA the whole batch runs at
# once). A run's working memory grows with its rows; its time per row hardly does. Measured with 2
# threads (benchmarks/train_memory.py and seal_speed.py, results in docs/benchmarks.md):
# - EfficientNet-Lite0, 224 px, batch 8: a dga run's peak over its baseline with chunks of 1 / 2 /
#   4 / 8 rows, 270 / 229 / 252 / 337 MiB (full fine-tuning: 646). The seal's residual step in
#   chunks of 4 against the whole batch, interleaved: 266 against 297 ms (the pair's image tower:
#   282 against 286); dga end to end 1.05x and 1.23x the torch loop's steps/s against 1.02x and
#   1.21x. At batch 32, a dga run peaked at 656 MiB against 1090 (full fine-tuning: 2028).
# - MiniLM, sequence 64, batch 32: a dga run peaked at 545 MiB in chunks of 16 against 716 for the
#   whole batch (full fine-tuning: 885), 0.71 against 0.74 s per step. At batch 8 it changes nothing.
# Both were measured at 2 threads. With more threads a chunk needs more rows to keep them busy:
# EfficientNet-Lite0, batch 32, on a 16-core machine (benchmarks/chunk_ab.py), the step took 1.18x /
# 1.09x / 0.99x the whole batch's time in chunks of 4 / 8 / 16 rows at 16 threads, and 1.06x / 1.03x /
# 1.01x at 8 threads; so a chunk has at least one row per thread.
TRAINING_CHUNKS = {"image": 4, "text": 16}


def training_arena_on(mode: str, modality: str) -> bool:
    """Whether training graphs of a `modality` tower get the arena under `mode` (one of TRAINING_ARENA_MODES)."""
    return modality == "text" if mode == "auto" else mode == "on"


class Seal:
    """An opened seal: its manifest, its towers, and the decrypted weights in memory.

    weights="shared": every graph takes its weights as inputs bound to one in-memory copy, so
    forward, VJP and embed graphs together hold the weights once. weights="copied": onnxruntime
    owns an optimised copy per graph (constant folding, prepacking); much faster for convolutions,
    but each loaded graph holds its own copy. weights="auto" (default): copied for a graph whose
    weights fit in AUTO_COPY_BYTES (the extra memory is small there), shared for bigger ones.
    """

    def __init__(
        self,
        file: SealFile,
        key: bytes | None,
        providers: str | Sequence[str] | None = None,
        threads: int = 0,
        weights: str = "auto",
        training_arena: str = "auto",
        training_chunk: int = 0,
    ):
        if weights not in WEIGHT_MODES:
            raise SealkitError(f"weights must be one of {WEIGHT_MODES}, got {weights!r}")
        if training_arena not in TRAINING_ARENA_MODES:
            raise SealkitError(f"training_arena must be one of {TRAINING_ARENA_MODES}, got {training_arena!r}")
        if isinstance(training_chunk, bool) or not isinstance(training_chunk, int) or training_chunk < 0:
            raise SealkitError(f"training_chunk must be a whole number of rows, 0 for auto; got {training_chunk!r}")
        self.file = file
        self.manifest: Manifest = file.manifest
        self._key = key
        self.providers = resolve_providers(providers)
        self.threads = threads
        self.weights_mode = weights
        self.training_arena = training_arena
        self.training_chunk = training_chunk
        self.authenticity_warnings: list[str] = []
        file.check_key(key)
        self._weights = _WeightPool(file.blob(WEIGHTS_BLOB, key))
        self.towers = {name: Tower(name, spec, self) for name, spec in self.manifest.towers.items()}

    @property
    def seal_id(self) -> str:
        return self.manifest.seal_id

    @property
    def weight_bytes(self) -> int:
        return self._weights.nbytes

    def tower(self, name: str | None = None) -> Tower:
        """A tower by name; without a name, the only tower."""
        if name is None:
            if len(self.towers) != 1:
                raise SealkitError(f"this seal has towers {sorted(self.towers)}; name one")
            return next(iter(self.towers.values()))
        if name not in self.towers:
            raise SealkitError(f"this seal has no tower '{name}'; it has {sorted(self.towers)}")
        return self.towers[name]

    def blob(self, name: str) -> bytes:
        return self.file.blob(name, self._key)

    def _session_options(self, training: bool = False, in_graph_order: bool = False, modality: str = "") -> ort.SessionOptions:
        options = ort.SessionOptions()
        if in_graph_order:
            # backward graphs list each widening of a saved mask next to its reader (compile/residuals.py);
            # onnxruntime's default order widened them all first (EfficientNet-Lite0, batch 8: the backward
            # peaked 210 MiB above its inputs, 116 MiB in graph order)
            options.execution_order = ort.ExecutionOrder.PRIORITY_BASED
        options.enable_cpu_mem_arena = not training or training_arena_on(self.training_arena, modality)  # see TRAINING_ARENA_MODES
        if training:
            # A training step runs forward_saved, torch, then backward (or forward then vjp): threads
            # left spinning after one run take the two cores from the next. MiniLM, batch 8, 2 threads:
            # the residual step took 0.83x the time without spinning, the recompute step 0.88x (0.89x
            # on EfficientNet-Lite0, whose residual step did not change); a VJP alone, 1.05x.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 4  # run failures are raised as one-line InputErrors instead
        if self.threads:
            options.intra_op_num_threads = self.threads
        # never let onnxruntime write the optimised (plaintext) model to disk
        options.optimized_model_filepath = ""
        return options

    def copies_weights(self, weights: list[ExternalWeight]) -> bool:
        """Whether a graph with these weights gets its own optimised copy (see WEIGHT_MODES)."""
        if self.weights_mode == "auto":
            return sum(w.length for w in weights) <= AUTO_COPY_BYTES
        return self.weights_mode == "copied"

    def _load_graph(self, blob_name: str, modality: str) -> _Graph:
        model = onnx.ModelProto.FromString(self.blob(blob_name))
        weights = external_weights(model)
        values = self._weights.values_for(weights)
        kind = blob_name.rpartition("/")[2]
        training = kind not in INFERENCE_GRAPHS
        options = self._session_options(training=training, in_graph_order=kind.startswith("backward"), modality=modality)
        if self.copies_weights(weights):
            options.add_external_initializers(list(values), list(values.values()))
            return _Graph(ort.InferenceSession(model.SerializeToString(), options, providers=session_providers(self.providers)), {}, training)
        weights_as_inputs(model)
        return _Graph(ort.InferenceSession(model.SerializeToString(), options, providers=session_providers(self.providers)), values, training)


def open_seal(
    path: str | Path,
    key: bytes | str | Path | None = None,
    verify_key: str | Path | None = None,
    providers: str | Sequence[str] | None = None,
    threads: int = 0,
    weights: str = "auto",
    training_arena: str = "auto",
    training_chunk: int = 0,
) -> Seal:
    """Open a seal: check it, verify its signature if `verify_key` is given, and decrypt it in memory.

    `key` is the AES key bytes or a key file path; without it the SEALKIT_KEY variable names the file.
    `verify_key` (the owner's sign.pub) likewise defaults to the file named by SEALKIT_VERIFY_KEY.
    `providers`: "cpu", "cuda", "auto" (default: CUDA when available) or onnxruntime provider names.
    `weights`: "auto" (default), "shared" or "copied": memory against speed, see `Seal`.
    `training_arena`: "auto" (default), "on" or "off": memory against speed for training graphs, see TRAINING_ARENA_MODES.
    `training_chunk`: rows of a batch per run of a training graph; 0 (default): auto, see TRAINING_CHUNKS.
    """
    file = read_seal(path)
    verify_key = crypto.resolve_verify_key_path(verify_key)
    if verify_key is not None:
        file.verify_signature(verify_key)
    key_bytes: bytes | None
    if isinstance(key, (bytes, bytearray)):
        key_bytes = bytes(key)
    else:
        key_path = crypto.resolve_key_path(key)
        key_bytes = crypto.read_key(key_path) if key_path is not None else None
    if file.manifest.encrypted and key_bytes is None:
        raise SealKeyError(f"{Path(path).name} is encrypted; give its key file, or set {crypto.KEY_ENV} to the key file", topic="key")
    seal = Seal(file, key_bytes, providers=providers, threads=threads, weights=weights, training_arena=training_arena, training_chunk=training_chunk)
    seal.authenticity_warnings = authenticity_warnings(file)
    return seal


def authenticity_warnings(file: SealFile) -> list[str]:
    """What the holder of this seal should know: an unencrypted seal's weights are only obfuscated,
    and an unsigned seal's origin cannot be checked."""
    warnings = []
    if not file.manifest.encrypted:
        warnings.append(f"{file.path.name} is not encrypted: its weights are only obfuscated, anyone with the file can read them")
    if not file.signature:
        warnings.append(f"{file.path.name} is not signed: nothing shows who made it or that it is unchanged; ask the owner for a signed seal")
    return warnings
