"""Image loading/preprocessing and text tokenisation (the torch-free inference path)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from sealkit.data import TextEncoder, decode_image_bytes, load_image, preprocess_images
from sealkit.errors import DataError

SPEC = {"kind": "image", "size": [4, 6], "mean": [0.5, 0.25, 0.0], "std": [0.5, 0.25, 1.0]}


def test_preprocess_constant_image_is_resized_and_normalised(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (10, 7), (255, 0, 51)).save(path)
    batch = preprocess_images([path, np.full((3, 3), 255, dtype=np.uint8)], SPEC)
    assert batch.shape == (2, 3, 4, 6) and batch.dtype == np.float32
    # channel c: (value / 255 - mean[c]) / std[c]
    np.testing.assert_allclose(batch[0, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(batch[0, 1], -1.0, atol=1e-6)
    np.testing.assert_allclose(batch[0, 2], 0.2, atol=1e-6)
    # a grayscale array is replicated to three channels
    np.testing.assert_allclose(batch[1, :, 0, 0], [1.0, 3.0, 1.0], atol=1e-6)


def test_bad_images_raise_data_error_naming_the_file(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="garbage.png"):
        load_image(garbage)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, format="PNG")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(buffer.getvalue()[:-40])
    with pytest.raises(DataError, match="truncated.png"):
        load_image(truncated)
    with pytest.raises(DataError, match="not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match="dtype float32"):
        load_image(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(DataError, match="shape"):
        load_image(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(DataError, match="at least one"):
        preprocess_images([], SPEC)
    with pytest.raises(DataError, match="kind 'image'"):
        preprocess_images([garbage], {"kind": "text"})


def test_decode_image_bytes(tmp_path):
    buffer = io.BytesIO()
    Image.new("L", (5, 3), 9).save(buffer, format="PNG")
    image = decode_image_bytes(buffer.getvalue(), "upload 'x.png'")
    assert image.mode == "RGB" and image.size == (5, 3)
    with pytest.raises(DataError, match="upload 'y.png'"):
        decode_image_bytes(b"nonsense", "upload 'y.png'")


def _tokenizer_json() -> str:
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "a": 4, "b": 5, "c": 6, "d": 7}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer.enable_padding(length=50)  # a packaged tokenizer's fixed padding must not leak through
    return tokenizer.to_str()


def test_text_encoder_pads_to_longest_and_truncates():
    encode = TextEncoder.from_json(_tokenizer_json(), max_length=5)
    ids, mask = encode(["a b", "a", "a b c d a b"])
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    assert ids.tolist() == [[2, 4, 5, 3, 0], [2, 4, 3, 0, 0], [2, 4, 5, 6, 3]]
    assert mask.tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    ids, mask = encode(["zzz"])
    assert ids.tolist() == [[2, 1, 3]] and mask.tolist() == [[1, 1, 1]]


def test_text_encoder_rejects_bad_input():
    encode = TextEncoder.from_json(_tokenizer_json(), max_length=8)
    with pytest.raises(DataError, match="at least one"):
        encode([])
    with pytest.raises(DataError, match="#1 is a int"):
        encode(["a", 3])
    with pytest.raises(DataError, match="single string"):
        encode("a b")
    with pytest.raises(DataError, match="no room after 2 special tokens"):
        TextEncoder.from_json(_tokenizer_json(), max_length=2)
    with pytest.raises(DataError, match="tokenizer JSON"):
        TextEncoder.from_json("{not json", max_length=8)
