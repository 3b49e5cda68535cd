"""A seal text tower's tokenisation: texts -> (input_ids, attention_mask) as int64 numpy arrays.

This module never imports torch: the same code tokenises for training and for inference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from sealkit.errors import DataError


class TextEncoder:
    """Tokenise a batch, truncating to `max_length` and padding to the batch's longest text.

    The tokenizer file's own padding/truncation settings are replaced: a packaged tokenizer may
    pad every text to a fixed length, which wastes compute on short batches.
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int) -> None:
        if int(max_length) < 1:
            raise DataError(f"text max_length must be at least 1, got {max_length}; fix the seal's text preprocessing")
        self.max_length = int(max_length)
        specials = tokenizer.post_processor.num_special_tokens_to_add(False) if tokenizer.post_processor else 0
        if self.max_length <= specials:
            # tokenizers would silently return sequences longer than max_length here.
            raise DataError(f"text max_length {self.max_length} leaves no room after {specials} special tokens; raise max_length")
        self.pad_id = _pad_id(tokenizer)
        self.tokenizer = tokenizer
        tokenizer.no_padding()
        try:
            tokenizer.enable_truncation(self.max_length)
        except Exception as exc:  # tokenizers raises its own exception types
            raise DataError(f"cannot truncate texts to max_length {self.max_length} ({exc}); raise max_length") from None
        tokenizer.enable_padding(pad_id=self.pad_id, pad_token=tokenizer.id_to_token(self.pad_id) or "[PAD]")

    @classmethod
    def from_json(cls, tokenizer_json: str, max_length: int) -> TextEncoder:
        """From a tokenizer.json text (what a seal stores for its text tower)."""
        try:
            tokenizer = Tokenizer.from_str(tokenizer_json)
        except Exception as exc:  # tokenizers raises a plain Exception for malformed JSON
            raise DataError(f"the tokenizer JSON is not a valid `tokenizers` file ({str(exc)[:120]}); re-export the seal") from None
        return cls(tokenizer, max_length)

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask), both int64 [N, L] with L = the longest text in tokens (<= max_length)."""
        if isinstance(texts, str):
            raise DataError("TextEncoder takes a list of texts, got a single string; wrap it in a list")
        texts = list(texts)
        if not texts:
            raise DataError("no texts to tokenise; pass at least one text")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise DataError(f"text #{i} is a {type(text).__name__}, not a string; convert it to str")
        encodings = self.tokenizer.encode_batch(texts)
        for i, encoding in enumerate(encodings):
            if sum(encoding.attention_mask) == 0:
                raise DataError(f"text #{i} ({texts[i][:40]!r}) produced no tokens; pass a non-empty text")
        input_ids = np.array([e.ids for e in encodings], dtype=np.int64)
        attention_mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return input_ids, attention_mask


def _pad_id(tokenizer: Tokenizer) -> int:
    """The tokenizer's own pad id if its file sets one, else the id of [PAD], else 0."""
    if tokenizer.padding is not None:
        return int(tokenizer.padding["pad_id"])
    pad = tokenizer.token_to_id("[PAD]")
    return 0 if pad is None else int(pad)
