"""Recipe: a small text encoder built in code with a fixed seed, with a word-level tokenizer (tests).

A text tower differs from an image tower in three ways: its first input is the token embeddings
(so a device-side input adapter can act on them), `embed` maps token ids to those embeddings, and
the preprocessing carries a tokenizer. The attention mask is an input but not differentiable.
"""

from __future__ import annotations

import torch
from tiny_vit import Block  # recipes may import their neighbours in the same folder
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from torch import nn

from sealkit.compile.recipe import EntryPoint, InputSpec, Recipe, TowerRecipe

WIDTH = 64
DEPTH = 3
HEADS = 4
OUT_DIM = 48
MAX_LENGTH = 32
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
WORDS = ["a", "an", "the", "of", "and", "or", "is", "are", "was", "photo", "picture", "image", "of", "small", "large", "big", "tiny", "red", "green", "blue", "yellow", "black", "white", "dark", "light", "bright", "cat", "dog", "bird", "car", "plane", "ship", "truck", "horse", "frog", "deer", "shirt", "shoe", "bag", "dress", "coat", "trouser", "sandal", "sneaker", "boot", "pullover", "top", "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "digit", "number", "class", "kind", "good", "bad", "great", "awful", "fresh", "rotten", "movie", "film", "story", "plot", "review", "hero", "villain", "love", "hate", "fun", "boring", "this", "that", "it", "with", "in", "on", "at", "for", "to", "from", "by", "very", "not", "no", "yes", "thing", "item", "object", "shape", "round", "square"]
VOCAB = SPECIALS + [f"{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + sorted(set(WORDS))


def build_tokenizer() -> Tokenizer:
    vocab = {token: i for i, token in enumerate(dict.fromkeys(VOCAB))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return tokenizer


class TinyTextEncoder(nn.Module):
    """(token_embeddings [batch, seq, 64], attention_mask [batch, seq]) -> embedding [batch, 48]."""

    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(0.02 * torch.randn(512, WIDTH))  # any sequence up to 512
        self.blocks = nn.ModuleList([Block(WIDTH, HEADS) for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, OUT_DIM)

    def forward(self, token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        length = token_embeddings.shape[1]
        x = token_embeddings + self.pos_embed[:length]
        mask = attention_mask.to(x.dtype)
        bias = (1.0 - mask)[:, None, None, :] * -10000.0
        for block in self.blocks:
            x = block(x, bias)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return self.head(self.norm(pooled))


def text_tower(seed: int = 0) -> TowerRecipe:
    torch.manual_seed(seed + 1)
    tokenizer = build_tokenizer()
    embed = nn.Embedding(tokenizer.get_vocab_size(), WIDTH).eval()
    encoder = TinyTextEncoder().eval()
    return TowerRecipe(
        name="text",
        modality="text",
        module=encoder,
        inputs=[
            InputSpec("token_embeddings", torch.randn(2, 7, WIDTH), dims={0: "batch", 1: "sequence"}),
            InputSpec("attention_mask", torch.ones(2, 7, dtype=torch.int64), dims={0: "batch", 1: "sequence"}, differentiable=False),
        ],
        embed=embed,
        embed_input=InputSpec("input_ids", torch.randint(0, 50, (2, 7)), dims={0: "batch", 1: "sequence"}, differentiable=False),
        entry_points=[
            EntryPoint("blocks.1", kind="prompt", tokens=4),
            EntryPoint("blocks.2.mlp", kind="add", shape=(WIDTH,)),
        ],
        preprocessing={"kind": "text", "tokenizer_json": tokenizer.to_str(), "max_length": MAX_LENGTH},
        finite_attention_bias=True,  # padding gets -10000 (TinyTextEncoder.forward)
    )


def recipe(seed: int = 0) -> Recipe:
    return Recipe(name="tiny-text", towers=[text_tower(int(seed))])
