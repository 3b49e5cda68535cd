"""Tables without column flags: columns named like text/label/image (or common variants) are picked
from the header, the CLI says which, and an ambiguous or unnamed table is a one-line error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sealkit.cli.hints import with_hint
from sealkit.data import load_dataset
from sealkit.data.readers import pick_columns
from sealkit.errors import DataError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "name, content, picked",
    [
        ("t.csv", "text,label\nfunny and warm,pos\ndull,neg\n", {"text": "text", "label": "label"}),
        ("t.tsv", "Sentence\tCategory\nfunny and warm\tpos\ndull\tneg\n", {"text": "Sentence", "label": "Category"}),
        ("t.csv", "id,review,class\n1,funny and warm,pos\n2,dull,neg\n", {"text": "review", "label": "class"}),
        ("t.jsonl", '{"review": "funny and warm", "target": "pos"}\n{"review": "dull", "target": "neg"}\n', {"text": "review", "label": "target"}),
    ],
)
def test_text_tables_work_without_flags(tmp_path, name, content, picked):
    path = write(tmp_path / name, content)
    assert pick_columns(path) == picked
    ds = load_dataset(str(path))
    assert [e.text for e in ds.examples] == ["funny and warm", "dull"]
    assert [e.label for e in ds.examples] == ["pos", "neg"]


def test_an_image_table_works_without_flags(tmp_path):
    for i in range(2):
        Image.new("RGB", (8, 8), (i * 100, 0, 0)).save(tmp_path / f"{i}.png")
    path = write(tmp_path / "t.csv", "file,class\n0.png,red\n1.png,black\n")
    ds = load_dataset(str(path))
    assert [Path(e.image).name for e in ds.examples] == ["0.png", "1.png"]
    assert [e.label for e in ds.examples] == ["red", "black"]


def test_an_ambiguous_table_is_an_error_listing_the_columns(tmp_path):
    path = write(tmp_path / "t.csv", "text,sentence,label\na,b,c\n")
    with pytest.raises(DataError, match=r"'text', 'sentence' could each be the text; name the text column \(columns: text, sentence, label\)") as info:
        load_dataset(str(path))
    assert with_hint(info.value).endswith("(pass --text-col)")  # the CLI names the flag


def test_a_table_with_no_recognisable_names_is_an_error_listing_the_columns(tmp_path):
    path = write(tmp_path / "t.csv", "a,b\n1,2\n")
    with pytest.raises(DataError, match=r"no column is named like an image, text or label \(a, b\)"):
        load_dataset(str(path))


def test_explicit_columns_still_win(tmp_path):
    path = write(tmp_path / "t.csv", "text,sentence,label\na,b,c\n")
    assert load_dataset(str(path), text_col="sentence", label_col="label").examples[0].text == "b"


def test_the_cli_says_which_columns_it_picked(tmp_path):
    good = write(tmp_path / "good.csv", "review,class\nfunny,pos\ndull,neg\n")
    code = (
        "import sys\nfrom sealkit.cli.adapt_commands import _load\n"
        "columns = dict(image_col=None, text_col=None, text_b_col=None, label_col=None, group_col=None)\n"
        "print(len(_load(sys.argv[1], columns, 'skip', None, None)))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(good)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"{good}: using column 'review' as the text, column 'class' as the label" in result.stdout
    assert result.stdout.strip().endswith("2")
