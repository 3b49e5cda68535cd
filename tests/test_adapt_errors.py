"""Every expected failure of the adapt path is one SealkitError with a message that says what to do.

Covers: lga on a dark seal (ExposureError), an adapter used with another seal (AdapterMismatchError
naming both seals), empty data / missing columns / unknown labels (DataError), and corrupted or
truncated adapter files (AdapterError). Checkpoint errors are in test_adapt_resume.py; the CLI's
exit codes in test_adapt_cli.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save as save_safetensors
from synthetic import gated_recipe, permuted_colour_dataset, write_png_table

from sealkit.adapters.config import AdapterConfig
from sealkit.adapters.file import read_adapter_file, write_adapter_file
from sealkit.cli.hints import with_hint
from sealkit.compile.export import export_seal
from sealkit.data import load_dataset
from sealkit.data.dataset import Dataset, Example
from sealkit.errors import AdapterError, AdapterMismatchError, DataError, ExposureError
from sealkit.runtime.seal import open_seal
from sealkit.runtime.task import TaskRuntime
from sealkit.train.api import adapt, evaluate
from sealkit.train.loop import TrainConfig
from sealkit.train.saving import load_adapter

QUICK = TrainConfig(steps=2, batch=6, lr=1e-2, seed=0)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def dark_seal(tmp_path_factory, key_bytes):
    """A dark export (no entry points) of the small gated backbone: a few seconds to build."""
    path = tmp_path_factory.mktemp("dark") / "gated-dark.seal"
    export_seal(gated_recipe(), path, key=key_bytes, exposure="dark")
    return open_seal(path, key=key_bytes, threads=1)


@pytest.fixture(scope="module")
def colours():
    return permuted_colour_dataset(2, seed=1)


@pytest.fixture(scope="module")
def dark_adapter(dark_seal, colours, tmp_path_factory):
    """A dga adapter trained (two steps) on the dark seal."""
    out = tmp_path_factory.mktemp("dark-adapter") / "dark.adapter"
    adapt(dark_seal, colours, colours, out, method="dga", task="classify", config=QUICK, progress=False)
    return out


def _quick(seal, train, out, method="output", task="classify", **kwargs):
    return adapt(seal, train, kwargs.pop("val", None), out, method=method, task=task, config=QUICK, progress=False, **kwargs)


# --- exposure ------------------------------------------------------------------------------------


def test_lga_on_a_dark_seal_is_an_exposure_error_that_suggests_dga(dark_seal, colours, tmp_path):
    assert dark_seal.manifest.exposure == "dark"
    with pytest.raises(ExposureError, match=r"lga needs entry points.*'gated' is dark.*expose none.*use method dga.*light seal") as info:
        _quick(dark_seal, colours, tmp_path / "lga.adapter", method="lga")
    assert "\n" not in str(info.value) and "--" not in str(info.value)  # library messages name no CLI flags
    assert "--method dga" in with_hint(info.value) and "--exposure light" in with_hint(info.value)  # the CLI adds them
    assert not (tmp_path / "lga.adapter").exists() and not (tmp_path / "lga.adapter.ckpt").exists()


def test_dga_works_on_the_same_dark_seal(dark_adapter, dark_seal):
    meta = read_adapter_file(dark_adapter, dark_seal.seal_id).meta
    assert meta["method"] == "dga" and meta["towers"]["image"]["entries"] == {}


# --- adapters bound to their seal ----------------------------------------------------------------


def _both_ids(message: str, dark_seal, pair_seal) -> None:
    assert dark_seal.seal_id in message and pair_seal.seal_id in message
    assert "gated" in message  # the seal it was trained for, by name


def test_an_adapter_for_another_seal_is_refused_everywhere_naming_both_seals(dark_adapter, dark_seal, pair_seal, colours, tmp_path):
    assert dark_seal.seal_id != pair_seal.seal_id
    attempts = {
        "load_adapter": lambda: load_adapter(dark_adapter, pair_seal),
        "read_adapter_file": lambda: read_adapter_file(dark_adapter, pair_seal.seal_id),
        "evaluate": lambda: evaluate(pair_seal, colours, adapter=dark_adapter),
        "TaskRuntime": lambda: TaskRuntime(pair_seal, dark_adapter),
        "adapt --init": lambda: _quick(pair_seal, colours, tmp_path / "init.adapter", init_from=dark_adapter),
    }
    for where, attempt in attempts.items():
        with pytest.raises(AdapterMismatchError, match=r"was trained for seal .* not for this seal .*use the adapter with the seal it was trained on") as info:
            attempt()
        _both_ids(str(info.value), dark_seal, pair_seal)
        assert "\n" not in str(info.value), where


# --- data ----------------------------------------------------------------------------------------


def test_an_empty_dataset_is_a_data_error(pair_seal, tmp_path):
    for task in ("classify", "retrieve"):
        with pytest.raises(DataError, match=r"empty"):
            _quick(pair_seal, Dataset([], name="nothing"), tmp_path / f"{task}.adapter", task=task)
    assert not list(tmp_path.iterdir())


def test_a_missing_column_is_a_data_error_listing_the_available_ones(colours, tmp_path):
    table = write_png_table(colours, tmp_path / "data")
    with pytest.raises(DataError, match=r"column\(s\) label: 'category' not found; available columns: image, label"):
        load_dataset(str(table), image_col="image", label_col="category")


def test_classification_data_without_labels_is_a_data_error_naming_the_option(pair_seal, tmp_path):
    unlabeled = Dataset([Example(image=e.image) for e in permuted_colour_dataset(1, seed=3).examples], name="unlabeled")
    with pytest.raises(DataError, match=r"classify: dataset 'unlabeled' has no label on 6 of 6 examples.*label column") as info:
        _quick(pair_seal, unlabeled, tmp_path / "x.adapter")
    assert with_hint(info.value).endswith("(pass --label-col)")


def test_retrieval_data_without_pairs_is_a_data_error(pair_seal, colours, tmp_path):
    with pytest.raises(DataError, match=r"retrieval needs pairs.*text_b") as info:
        _quick(pair_seal, colours, tmp_path / "x.adapter", task="retrieve")
    assert "--text-b-col" in with_hint(info.value)


def test_an_unknown_label_is_a_data_error_naming_it(pair_seal, colours, dark_adapter, dark_seal, tmp_path):
    odd = Example(image=colours.examples[0].image, label="purple")
    with pytest.raises(DataError, match=r"labels \['purple'\] are not in class_names"):
        Dataset(colours.examples + [odd], name="odd", class_names=colours.class_names)
    # a validation set with a class the training set does not have
    val = Dataset(colours.examples[:5] + [odd], name="val")
    with pytest.raises(DataError, match=r"label 'purple' is not one of the task's classes \['red', 'green', 'blue', 'yellow', 'black', 'white'\]"):
        _quick(pair_seal, colours, tmp_path / "x.adapter", val=val)
    # evaluating a trained adapter on data with a class it does not know
    with pytest.raises(DataError, match=r"label 'purple' is not one of the task's classes"):
        evaluate(dark_seal, val, adapter=dark_adapter)


# --- corrupted adapter files ---------------------------------------------------------------------


def _corruptions(good: bytes) -> dict[str, bytes]:
    header_len = int.from_bytes(good[:8], "little")
    data_start = 8 + header_len
    flipped_header = bytearray(good)
    flipped_header[8] ^= 0x5A  # the header's opening brace
    flipped_data = bytearray(good)
    flipped_data[data_start + (len(good) - data_start) // 2] ^= 0x01
    return {
        "empty": b"",
        "a few bytes": good[:5],
        "truncated header": good[: 8 + header_len // 2],
        "truncated data": good[: data_start + (len(good) - data_start) // 2],
        "last byte missing": good[:-1],
        "not safetensors": b"definitely not an adapter file" * 10,
        "flipped header byte": bytes(flipped_header),
        "flipped data byte": bytes(flipped_data),
    }


def test_corrupted_or_truncated_adapter_files_are_adapter_errors(dark_adapter, dark_seal, colours, tmp_path):
    good = dark_adapter.read_bytes()
    for name, data in _corruptions(good).items():
        path = tmp_path / f"{name.replace(' ', '-')}.adapter"
        path.write_bytes(data)
        for where, attempt in {
            "read_adapter_file": lambda: read_adapter_file(path),
            "load_adapter": lambda: load_adapter(path, dark_seal),
            "TaskRuntime": lambda: TaskRuntime(dark_seal, path),
            "evaluate": lambda: evaluate(dark_seal, colours, adapter=path),
        }.items():
            with pytest.raises(AdapterError) as info:
                attempt()
            assert type(info.value) is AdapterError, (name, where)
            message = str(info.value)
            assert str(path) in message and "\n" not in message, (name, where)
            assert "corrupted" in message or "not a sealkit adapter" in message, (name, where, message)


def test_a_flipped_bit_in_the_weights_is_caught_by_the_checksum(dark_adapter, tmp_path):
    good = dark_adapter.read_bytes()
    path = tmp_path / "flipped.adapter"
    path.write_bytes(_corruptions(good)["flipped data byte"])
    with pytest.raises(AdapterError, match=r"is corrupted: its tensors do not match the checksum in its header; retrain or copy it again"):
        read_adapter_file(path)


def test_a_missing_adapter_file_is_an_adapter_error(dark_seal, tmp_path):
    with pytest.raises(AdapterError, match=r"no adapter file at .*absent\.adapter; check the path"):
        load_adapter(tmp_path / "absent.adapter", dark_seal)


def test_a_safetensors_file_that_is_not_an_adapter_is_refused(dark_seal, tmp_path):
    path = tmp_path / "plain.safetensors"
    path.write_bytes(save_safetensors({"w": np.zeros(3, np.float32)}, metadata={"other": json.dumps({"x": 1})}))
    with pytest.raises(AdapterError, match=r"is a safetensors file but not a sealkit adapter"):
        read_adapter_file(path)


def test_an_adapter_from_a_newer_format_is_refused_with_the_versions(dark_adapter, tmp_path):
    file = read_adapter_file(dark_adapter)
    path = write_adapter_file(tmp_path / "future.adapter", {**file.meta, "format_version": 99}, file.tensors)
    with pytest.raises(AdapterError, match=r"uses adapter format version 99; this sealkit reads 1"):
        read_adapter_file(path)


def test_an_adapter_whose_tensors_do_not_match_its_layout_is_an_adapter_error(dark_adapter, dark_seal, tmp_path):
    file = read_adapter_file(dark_adapter)
    missing = {k: v for k, v in file.tensors.items() if not k.endswith("input.prompt")}
    path = write_adapter_file(tmp_path / "missing.adapter", file.meta, missing)
    with pytest.raises(AdapterError, match=r"does not match its own configuration"):
        load_adapter(path, dark_seal)
    reshaped = dict(file.tensors)
    name = next(k for k in reshaped if k.endswith("input.prompt"))
    reshaped[name] = np.zeros((1,) + reshaped[name].shape[1:], np.float32)
    path = write_adapter_file(tmp_path / "reshaped.adapter", file.meta, reshaped)
    with pytest.raises(AdapterError, match=r"prompt has shape \[1, (\d+), (\d+)\], expected \[3, \1, \2\]"):
        load_adapter(path, dark_seal)


def test_an_unknown_method_is_an_adapter_error(pair_seal, colours, tmp_path):
    with pytest.raises(AdapterError, match=r"unknown method 'lora'; use one of output, dga, lga"):
        _quick(pair_seal, colours, tmp_path / "x.adapter", method="lora", adapter_config=AdapterConfig())
