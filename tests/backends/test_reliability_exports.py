"""Reliability, round four: an exported model is one identity from load to exit.

An export is checked at load against the digests its manifest records, and
every file it is later read from (a tower opened lazily) against the digest
recorded then; the manifest's own values carry a digest, the files of an
export are exactly those it records, and its names are plain file names. A
foreign ``onnx/`` folder (Optimum's, transformers.js') is never touched, and a
checkpoint's own export goes stale when any file it was made from changes. A
handle that runs below its stored precision saves and exports only the
weights it computes with. Options and environment variables are refused in
one line that names them.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sklearn_clip import (
    clear_model_cache,
    export_model,
    load_model,
    model_cache_info,
)
from sklearn_clip._backends.exported.manifest import MANIFEST_NAME, file_digest
from sklearn_clip.cli import main
from sklearn_clip.toy import make_tiny_clip

pytest.importorskip("onnxruntime")

TEXTS = ["a red circle", "a blue square"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return Path(make_tiny_clip(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    return export_model(checkpoint, tmp_path_factory.mktemp("export") / "onnx")


@pytest.fixture
def copy(exported, tmp_path):
    """A fresh copy of the export, for a test to damage."""
    return load_model(exported).save_pretrained(tmp_path / "copy")


@pytest.fixture
def images(gradient):
    return [Image.fromarray(gradient(32, 40, seed)) for seed in range(2)]


def _edit_json(path, edit):
    values = json.loads(path.read_text())
    edit(values)
    path.write_text(json.dumps(values, indent=2))


# -- 1. a foreign onnx/ folder is never touched -------------------------------------


def test_export_identity_a_foreign_onnx_folder_is_left_as_it_is(
    tmp_path, monkeypatch, caplog, isolated_cache
):
    # The layout Optimum and transformers.js ship: towers without our manifest.
    checkpoint = Path(make_tiny_clip(tmp_path / "model"))
    foreign = {"model.onnx": b"not ours", "config.json": b'{"from": "optimum"}'}
    (checkpoint / "onnx").mkdir()
    for name, data in foreign.items():
        (checkpoint / "onnx" / name).write_bytes(data)
    monkeypatch.setenv("SKLEARN_CLIP_DATA", str(tmp_path / "data"))
    with caplog.at_level(logging.WARNING, logger="sklearn_clip"):
        handle = load_model(checkpoint, backend="onnx")
    found = {p.name: p.read_bytes() for p in (checkpoint / "onnx").iterdir()}
    assert found == foreign
    assert (tmp_path / "data") in handle.directory.parents
    assert "not written by sklearn-clip" in caplog.text
    assert str(handle.directory) in caplog.text
    assert handle.encode_texts(TEXTS).shape == (2, 32)


# -- 2. a tower opened later is the tower checked at load ---------------------------


def test_export_identity_a_tower_opened_later_is_the_one_checked_at_load(
    tmp_path, images, isolated_cache
):
    first = Path(make_tiny_clip(tmp_path / "first"))
    other = Path(make_tiny_clip(tmp_path / "other", random_state=1))
    target = export_model(first, tmp_path / "export")
    handle = load_model(target)
    texts = handle.encode_texts(TEXTS)  # opens the text tower only
    export_model(other, target, overwrite=True)  # re-exported in place
    np.testing.assert_array_equal(handle.encode_texts(TEXTS), texts)
    with pytest.raises(ValueError, match="'image_model.onnx'") as error:
        handle.encode_images(images)
    assert str(target) in str(error.value) and "load" in str(error.value)


# -- 3. the manifest's values and the set of files are checked ----------------------


@pytest.mark.parametrize(
    ("name", "change"),
    [
        (MANIFEST_NAME, lambda m: m.update(logit_scale=1.0)),
        (MANIFEST_NAME, lambda m: m.update(family="siglip", is_sigmoid=True)),
        (MANIFEST_NAME, lambda m: m.update(embedding_dim=64)),
        (MANIFEST_NAME, lambda m: m.update(pad_token_id=1)),
        ("special_tokens_map.json", None),
        ("added_tokens.json", None),
        ("processor_config.json", None),
    ],
    ids=["logit_scale", "family", "embedding_dim", "pad_token_id"]
    + ["added special_tokens_map", "added added_tokens", "added processor_config"],
)
def test_export_identity_manifest_values_and_added_files_are_refused(
    copy, name, change
):
    if change is not None:
        _edit_json(copy / name, change)
    else:
        (copy / name).write_text(json.dumps({"pad_token": "<|endoftext|>"}))
    with pytest.raises(ValueError, match=f"'{name}'") as error:
        load_model(copy)
    message = str(error.value)
    assert str(copy) in message and "export_model" in message
    assert "\n" not in message


# -- 4. manifest names are plain file names -----------------------------------------


@pytest.mark.parametrize("name", ["../outside.json", "ABSOLUTE", "sub/in.json", ".."])
def test_export_identity_manifest_names_are_plain_file_names(copy, tmp_path, name):
    # Each name points at a real file with its true digest: before names were
    # checked, such an export loaded, and save_pretrained wrote outside its target.
    if name == "ABSOLUTE":
        name = str(tmp_path / "absolute.json")
    target = copy / name
    if name != "..":
        target.parent.mkdir(exist_ok=True)
        target.write_text("{}")
    digest = file_digest(target) if target.is_file() else "0" * 64
    _edit_json(copy / MANIFEST_NAME, lambda m: m["files"].update({name: digest}))
    with pytest.raises(ValueError, match="plain file name") as error:
        load_model(copy).save_pretrained(tmp_path / "saved" / "here")
    assert repr(name) in str(error.value)
    assert not (tmp_path / "saved").exists()


# -- 5. a checkpoint's onnx/ goes stale when its preprocessing changes --------------


@pytest.mark.parametrize("name", ["processor_config.json", "tokenizer_config.json"])
def test_export_identity_preprocessing_changes_make_the_export_stale(
    tmp_path, caplog, isolated_cache, name
):
    checkpoint = Path(make_tiny_clip(tmp_path / "model"))
    load_model(checkpoint, backend="onnx")
    if name == "processor_config.json":
        edit = lambda c: c["image_processor"].update(image_mean=[0.5, 0.5, 0.5])  # noqa: E731
    else:
        edit = lambda c: c.update(model_max_length=7)  # noqa: E731
    _edit_json(checkpoint / name, edit)
    clear_model_cache()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sklearn_clip"):
        renewed = load_model(checkpoint, backend="onnx")
    assert "made from other" in caplog.text
    assert renewed.directory == checkpoint / "onnx"
    if name == "processor_config.json":
        assert list(renewed.image_processor.image_mean) == [0.5, 0.5, 0.5]
    else:
        assert renewed.tokenizer.model_max_length == 7


# -- 6. a handle below its stored precision saves the weights it computes with -------


def test_saved_weights_identity_reread_weights_are_checked_against_the_fingerprint(
    tmp_path, isolated_cache
):
    checkpoint = Path(make_tiny_clip(tmp_path / "model"))
    handle = load_model(checkpoint, device="cpu", dtype="bfloat16")
    make_tiny_clip(checkpoint, random_state=1)  # other weights, same folder
    with pytest.raises(ValueError, match="changed since") as error:
        handle.save_pretrained(tmp_path / "saved")
    assert repr(str(checkpoint)) in str(error.value)
    assert not list((tmp_path / "saved").glob("*.safetensors"))
    with pytest.raises(ValueError, match=repr(str(checkpoint))):
        export_model(handle, tmp_path / "export")
    assert not (tmp_path / "export").exists()


# -- 7. options and environment variables, refused in one line -----------------------


@pytest.mark.parametrize(
    ("variable", "use"),
    [
        ("SKLEARN_CLIP_MODEL_CACHE_SIZE", lambda handle: model_cache_info()),
        (
            "SKLEARN_CLIP_TEXT_CACHE_SIZE",
            lambda handle: handle.encode_texts(["a text seen once"]),
        ),
    ],
)
def test_option_refused_a_non_numeric_size_variable(
    tiny_clip, monkeypatch, variable, use
):
    monkeypatch.setenv(variable, "lots")
    with pytest.raises(ValueError, match=variable) as error:
        use(tiny_clip)
    message = str(error.value)
    assert "'lots'" in message and "whole number" in message and "\n" not in message


def test_option_refused_an_unknown_device(
    tiny_clip_path, image_files, tmp_path, capsys
):
    with pytest.raises(ValueError, match="device") as error:
        load_model(tiny_clip_path, device="bogus")
    assert "'bogus'" in str(error.value) and "'cuda:0'" in str(error.value)
    images = str(image_files["rgb.jpg"].parent)
    argv = ["embed", "--model", str(tiny_clip_path), "--images", images]
    argv += ["--output", str(tmp_path / "e.csv"), "--device", "bogus"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'bogus'" in err and "'cpu'" in err
