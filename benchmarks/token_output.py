"""What would a token-level output adapter add to text dga? A white-box simulation on rt-sentiment.

Issue #11 asks dga to recover 90% of full fine-tuning's gain on text; through MiniLM seals it
recovers 66-72% (docs/results.md), and five input-side designs and a bigger output MLP did not move
it. Every one of them kept the seal's output as it is: the sentence embedding, mean-pooled over the
tokens. This script measures what the device could do if the seal returned the last layer's token
states instead and pooled on the device, with a slim transformer layer over the tokens as the output
adapter (pre-norm, 4 heads of width 32, feed-forward 256, output projections at zero: the identity
at start; 396k parameters, plus the 99k of the pooled output adapter after it: 2.2% of MiniLM
in all).

Why a simulation is enough: dga trains only modules outside the backbone, and the gradient a seal
returns for its input is the one torch autograd computes through the frozen module. So dga here is
dga through a seal, apart from the output the seal would have to return.

Methods (same split, seeds and steps; each starts from the zero-shot text head, no fitted start):
  output-pooled  sealkit's output adapter (residual MLP, hidden 128) on the pooled embedding
  output-tokens  the token layer, then pooling, then the same MLP
  dga-pooled     output-pooled plus sealkit's text input adapter (trained through the backbone)
  dga-tokens     output-tokens plus the text input adapter
  full           every MiniLM weight (lr 1e-4) plus the pooled output adapter
The text head is sealkit's: the class prompts ("a {} movie review.") go through the same tower and
adapters, cosine similarity times a learnable scale. Checkpoints: the best validation accuracy of
step 0 and 6 evaluations; its test accuracy is reported. Each finished run is appended to --out and
skipped when the command is run again.

`--text-prompts N` gives the dga methods' input adapter N soft prompt tokens after the first token
(sealkit's `--text-prompts`), trained at `--prompt-lr` (default: the input adapter's 2e-3). A run is
skipped when --out holds one with the same method, seed, steps and prompt settings.

Usage:
  .venv/bin/python benchmarks/token_output.py --seeds 0,1,2 --steps 150 --out benchmarks/results/token_output_rt.jsonl
It prints each run as it lands, then per method the mean validation and test accuracy and the mean
share of full fine-tuning's gain over zero-shot (test; zero-shot is step 0, the same for every run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import task_data  # noqa: E402

from export.minilm import HIDDEN, load_model, model_dir  # noqa: E402
from sealkit.data.text import TextEncoder  # noqa: E402
from sealkit.train.modules import OutputAdapter, TextInputAdapter  # noqa: E402

METHODS = ("output-pooled", "output-tokens", "dga-pooled", "dga-tokens", "full")
TEMPLATE = "a {} movie review."


class TokenLayer(nn.Module):
    """token states -> one slim pre-norm transformer layer (identity at start) -> masked mean -> OutputAdapter."""

    def __init__(self, width: int = 128, heads: int = 4, ffn: int = 256, hidden: int = 128):
        super().__init__()
        self.heads, self.width = heads, width
        self.norm1 = nn.LayerNorm(HIDDEN)
        self.qkv = nn.Linear(HIDDEN, 3 * width)
        self.proj = nn.Linear(width, HIDDEN)
        self.norm2 = nn.LayerNorm(HIDDEN)
        self.ffn_in = nn.Linear(HIDDEN, ffn)
        self.ffn_out = nn.Linear(ffn, HIDDEN)
        for layer in (self.proj, self.ffn_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.pooled = OutputAdapter(HIDDEN, HIDDEN, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        bias = (1.0 - mask.float())[:, None, None, :] * -1e4
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, self.width // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(batch, length, self.width)
        x = x + self.proj(attended)
        x = x + self.ffn_out(F.gelu(self.ffn_in(self.norm2(x))))
        return self.pooled(masked_mean(x, mask))


class PooledOutput(nn.Module):
    """token states -> masked mean -> OutputAdapter: what sealkit does today (the seal pools)."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.pooled = OutputAdapter(HIDDEN, HIDDEN, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pooled(masked_mean(x, mask))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MiniLM's pooling, as its seal computes it: the mean over real tokens, L2-normalised."""
    keep = mask.float()[..., None]
    return F.normalize((x * keep).sum(1) / keep.sum(1).clamp(min=1e-9), dim=-1)


def encode(encoder: TextEncoder, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = encoder(texts)
    return torch.from_numpy(ids), torch.from_numpy(mask)


def run(method: str, seed: int, steps: int, data: dict, prompts: tuple, batch: int, evals: int, text_prompts: int = 0, prompt_lr: float = 2e-3) -> dict:
    torch.manual_seed(seed)
    backbone, word = load_model()
    for p in [*backbone.parameters(), *word.parameters()]:
        p.requires_grad_(False)
    input_adapter = TextInputAdapter(HIDDEN, prompts=text_prompts)  # made for every method, so all draw the same random numbers
    output_adapter = TokenLayer() if method.endswith("tokens") else PooledOutput()
    log_scale = nn.Parameter(torch.tensor(np.log(100.0), dtype=torch.float32))
    groups = [{"params": [*output_adapter.parameters(), log_scale], "lr": 1e-3}]
    if method.startswith("dga"):
        groups.append({"params": [p for name, p in input_adapter.named_parameters() if name != "prompts"], "lr": 2e-3})
        if text_prompts:
            groups.append({"params": [input_adapter.prompts], "lr": prompt_lr, "weight_decay": 0.0})
    if method == "full":
        for p in backbone.parameters():
            p.requires_grad_(True)
        groups.append({"params": list(backbone.parameters()), "lr": 1e-4})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)

    def tokens(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = int(mask.sum(1).max())
        ids, mask = ids[:, :keep], mask[:, :keep]
        embeddings = word(ids)
        if method.startswith("dga"):
            embeddings, mask = input_adapter(embeddings, mask)
        x = backbone.embeddings(embeddings)
        bias = (1.0 - mask.float())[:, None, None, :] * -10000.0
        for layer in backbone.encoder.layer:
            x = layer(x, bias)
        return x, mask

    def logits(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        queries = F.normalize(output_adapter(*tokens(ids, mask)), dim=-1)
        classes = F.normalize(output_adapter(*tokens(*prompts)), dim=-1)
        return log_scale.exp() * queries @ classes.T

    def accuracy(split: str) -> float:
        ids, mask, labels = data[split]
        with torch.no_grad():
            predicted = torch.cat([logits(ids[s : s + 100], mask[s : s + 100]).argmax(1) for s in range(0, len(labels), 100)])
        return float((predicted == labels).float().mean())

    ids, mask, labels = data["train"]
    generator = torch.Generator().manual_seed(seed)
    order, position = torch.randperm(len(labels), generator=generator), 0
    best = (accuracy("val"), 0, accuracy("test"))
    started = time.perf_counter()
    for step in range(1, steps + 1):
        if position + batch > len(labels):
            order, position = torch.randperm(len(labels), generator=generator), 0
        rows = order[position : position + batch]
        position += batch
        loss = F.cross_entropy(logits(ids[rows], mask[rows]), labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(1, steps // evals) == 0:
            val = accuracy("val")
            if val > best[0]:
                best = (val, step, accuracy("test"))
    result = {"method": method, "seed": seed, "steps": steps, "val": best[0], "best_step": best[1], "test": best[2], "seconds": time.perf_counter() - started}
    return {**result, **prompt_setting(text_prompts, prompt_lr)}


def prompt_setting(text_prompts: int, prompt_lr: float) -> dict:
    """What a run records of its prompt tokens: nothing without them (the runs written before they existed)."""
    return {"text_prompts": text_prompts, "prompt_lr": prompt_lr} if text_prompts else {}


def run_key(record: dict) -> tuple:
    """A run's identity in --out: method, seed, steps and prompt settings."""
    return (record["method"], record["seed"], record["steps"], record.get("text_prompts", 0), record.get("prompt_lr"))


def summary(runs: list[dict], steps: int, zero_shot: float) -> list[str]:
    """Per method: mean validation and test accuracy, and the share of full fine-tuning's test gain over zero-shot."""
    by = {(r["method"], r["seed"]): r for r in runs if r["steps"] == steps}
    full = [r["test"] for (m, _), r in sorted(by.items()) if m == "full"]
    lines = [f"zero-shot test {zero_shot:.4f}"]
    for method in METHODS:
        rows = [r for (m, _), r in sorted(by.items()) if m == method]
        if not rows:
            continue
        tests = [r["test"] for r in rows]
        line = f"{method:14s} seeds {[r['seed'] for r in rows]}: val {np.mean([r['val'] for r in rows]):.4f} test {np.mean(tests):.4f} {[round(t, 3) for t in tests]}"
        if full and method != "full":
            line += f"  share of full's gain {(np.mean(tests) - zero_shot) / (np.mean(full) - zero_shot):.0%}"
        lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--evals", type=int, default=6)
    parser.add_argument("--sizes", default="2000,400,1000", help="train,val,test examples (the quality benchmark's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--text-prompts", type=int, default=0, help="soft prompt tokens in the dga methods' input adapter (0: none)")
    parser.add_argument("--prompt-lr", type=float, default=2e-3, help="their learning rate (the input adapter's: 2e-3)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "token_output_rt.jsonl")
    args = parser.parse_args()
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method {unknown[0]!r}; one of {', '.join(METHODS)}")
    torch.set_num_threads(args.threads)
    n_train, n_val, n_test = (int(n) for n in args.sizes.split(","))
    splits = task_data("rt-sentiment", {"train": n_train, "val": n_val, "test": n_test}, 0)[:3]
    encoder = TextEncoder.from_json((model_dir() / "tokenizer.json").read_text(), 128)
    class_names = splits[0].class_names
    data = {}
    for name, dataset in zip(("train", "val", "test"), splits):
        ids, mask = encode(encoder, [e.text for e in dataset.examples])
        data[name] = (ids, mask, torch.tensor([class_names.index(e.label) for e in dataset.examples]))
    prompts = encode(encoder, [TEMPLATE.format(name) for name in class_names])
    runs = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    done = {run_key(r) for r in runs}
    setting = prompt_setting(args.text_prompts, args.prompt_lr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        for method in methods:
            if run_key({"method": method, "seed": seed, "steps": args.steps, **setting}) in done:
                continue
            result = run(method, seed, args.steps, data, prompts, args.batch, args.evals, args.text_prompts, args.prompt_lr)
            print(json.dumps(result), flush=True)
            runs.append(result)
            with args.out.open("a") as f:  # one line per finished run: an interrupted benchmark resumes
                f.write(json.dumps(result) + "\n")
    zero_shot = run("output-pooled", 0, 0, data, prompts, args.batch, args.evals)["test"]  # step 0: identity adapters
    print("\n".join(summary(runs, args.steps, zero_shot)))


if __name__ == "__main__":
    main()
