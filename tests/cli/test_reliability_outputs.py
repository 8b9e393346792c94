"""One rule for every output the package replaces (docs/reliability.md).

An output replaces only what sklearn-clip wrote itself (recognised by its
manifest or marker, or an empty folder); never its own source, an input, or
the current directory; the check runs before any work; results carry the
umask's permissions. Each test covers one class of defect and is named after
it; each failed before the rule was put in ``sklearn_clip._files``.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sklearn_clip import CLIPContrastiveFinetuner, export_model, load_model
from sklearn_clip._files import OutputPathError
from sklearn_clip._loader import export as _export
from sklearn_clip.cli import main
from sklearn_clip.toy import make_tiny_clip

pytest.importorskip("onnxruntime")


def _contents(folder):
    """``{relative path: SHA-256}`` of every file under ``folder``."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _error_line(capsys, command):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    (line,) = [x for x in err.splitlines() if x.startswith(f"sklearn-clip {command}")]
    return line


@pytest.fixture
def checkpoint(tmp_path):
    """A model folder of the test's own: some tests try to destroy it."""
    return Path(make_tiny_clip(tmp_path / "tuned"))


@pytest.fixture
def no_export_work(monkeypatch):
    """Fail the test if an export starts loading its model."""

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(_export, "_float32_handle", refuse)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("output-rule-images")
    rng = np.random.default_rng(0)
    for i in range(4):
        pixels = rng.integers(0, 256, (16, 16, 3), np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, images):
    """A fine-tuner fitted on a model folder of this module's own."""
    model = make_tiny_clip(tmp_path_factory.mktemp("output-rule-model") / "base")
    paths = sorted(str(p) for p in images.glob("*.png"))
    return CLIPContrastiveFinetuner(
        model,
        max_epochs=1,
        batch_size=4,
        validation_fraction=None,
        device="cpu",
        dtype="float32",
        random_state=0,
    ).fit(paths, ["red", "green", "blue", "grey"])


# -- 1. an output never replaces its own source ---------------------------------


def test_output_rule_export_never_replaces_its_source(
    checkpoint, tmp_path, capsys, no_export_work
):
    before = _contents(checkpoint)
    # The source itself, and a folder holding it.
    for target in (checkpoint, checkpoint.parent):
        with pytest.raises(OutputPathError, match="the model it is made from"):
            export_model(checkpoint, target, overwrite=True)
    assert main(["export", str(checkpoint), str(checkpoint), "--overwrite"]) == 2
    line = _error_line(capsys, "export")
    assert str(checkpoint) in line and "the model it is made from" in line
    assert _contents(checkpoint) == before


# -- 2. never the current directory ------------------------------------------------


def test_output_rule_export_never_replaces_the_current_directory(
    checkpoint, tmp_path, capsys, monkeypatch, no_export_work
):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    monkeypatch.chdir(work)
    for target in (".", "..", str(work)):  # the current directory, or holding it
        with pytest.raises(OutputPathError, match="current directory"):
            export_model(checkpoint, target, overwrite=True)
    assert main(["export", str(checkpoint), ".", "--overwrite"]) == 2
    assert "current directory" in _error_line(capsys, "export")
    assert (work / "notes.txt").read_text() == "keep me"


# -- 3. only a folder the package wrote (or an empty one) is replaced ------------


def test_output_rule_export_never_replaces_a_folder_it_did_not_write(
    checkpoint, tmp_path, capsys, no_export_work
):
    mine = tmp_path / "my-photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(OutputPathError) as error:
        export_model(checkpoint, mine, overwrite=True)
    message = str(error.value)
    assert str(mine) in message and "not an sklearn-clip export" in message
    assert "Choose a new path" in message  # the fix
    assert main(["export", str(checkpoint), str(mine), "--overwrite"]) == 2
    assert "not an sklearn-clip export" in _error_line(capsys, "export")
    assert (mine / "holiday.jpg").read_bytes() == b"precious"


# -- 4. results carry the umask's permissions -------------------------------------


def test_output_rule_export_folder_has_the_umask_permissions(checkpoint, tmp_path):
    umask = os.umask(0o002)
    try:
        path = export_model(checkpoint, tmp_path / "exported")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o775


# -- 5. staging folders of killed exports are swept, live ones kept ---------------


def test_output_rule_export_sweeps_staging_folders_of_killed_runs(checkpoint, tmp_path):
    from sklearn_clip._folders import STALE_AFTER_S, staging_prefix

    target = tmp_path / "exported"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its process id names no process now
    killed = tmp_path / (staging_prefix(target, dead.pid) + "k1ll3d")
    live = tmp_path / (staging_prefix(target, os.getpid()) + "l1v3")
    old = tmp_path / ".exported.partial-0ld_v3rs"  # an older version's name
    for folder in (killed, live, old):
        folder.mkdir()
        (folder / "image_model.onnx").write_bytes(b"half")
    a_day_ago = time.time() - STALE_AFTER_S - 60
    os.utime(old, (a_day_ago, a_day_ago))
    export_model(checkpoint, target)
    assert not killed.exists() and not old.exists()
    assert live.exists()  # a run still going keeps its staging folder
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["tuned", "exported", live.name])


# -- 6. finetune checks --output before it trains ---------------------------------


def test_output_rule_finetune_checks_its_output_before_training(
    checkpoint, images, tmp_path, capsys, monkeypatch
):
    def refuse(*args, **kwargs):
        raise AssertionError("training started before --output was checked")

    monkeypatch.setattr(CLIPContrastiveFinetuner, "fit", refuse)
    data = tmp_path / "data"
    data.mkdir()
    table = data / "pairs.csv"
    paths = sorted(str(p) for p in images.glob("*.png"))
    pd.DataFrame({"image": paths, "caption": ["a"] * len(paths)}).to_csv(table)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    refusals = {
        str(mine): "not a model sklearn-clip saved",
        str(checkpoint): "the model it is made from",
        ".": "current directory",
        str(data): "overlaps the input",
    }
    before = _contents(tmp_path)
    for output, message in refusals.items():
        argv = ["finetune", "--model", str(checkpoint), "--table", str(table)]
        assert main([*argv, "--device", "cpu", "--output", output]) == 2
        assert message in _error_line(capsys, "finetune")
    assert _contents(tmp_path) == before


# -- 7. embed never writes shards into, around or inside its images ---------------


def test_output_rule_embed_shards_never_overlap_the_images_folder(
    checkpoint, images, tmp_path, capsys, monkeypatch
):
    def refuse(*args, **kwargs):
        raise AssertionError("work started before --output was checked")

    monkeypatch.setattr("sklearn_clip._cli.embed._embedder", refuse)
    photos = tmp_path / "photos"
    shutil.copytree(images, photos)
    before = _contents(tmp_path)
    for output in (photos, photos / "embeddings", tmp_path):
        argv = ["embed", "--model", str(checkpoint), "--images", str(photos)]
        assert main([*argv, "--output", f"{output}{os.sep}"]) == 2
        assert str(output) in _error_line(capsys, "embed")
    assert _contents(tmp_path) == before
    assert not (photos / "embeddings").exists()


# -- 8. a fine-tuned model is saved by the same rule -------------------------------


def test_output_rule_save_pretrained_never_replaces_what_it_did_not_write(
    fitted, tmp_path, monkeypatch
):
    source = Path(fitted.model)
    before = _contents(source)
    with pytest.raises(OutputPathError, match="the model it is made from"):
        fitted.save_pretrained(source)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text("{}")  # someone else's model folder
    with pytest.raises(OutputPathError, match="not a model sklearn-clip saved"):
        fitted.save_pretrained(mine)
    monkeypatch.chdir(mine)
    with pytest.raises(OutputPathError, match="current directory"):
        fitted.save_pretrained(".")
    assert _contents(source) == before
    assert _contents(mine) == {"config.json": hashlib.sha256(b"{}").hexdigest()}
    # What it saved itself, it saves again (a rerun of the same script).
    saved = fitted.save_pretrained(tmp_path / "saved")
    (saved / "leftover.bin").write_bytes(b"of the first save")
    again = fitted.save_pretrained(tmp_path / "saved")
    assert not (again / "leftover.bin").exists()
    assert load_model(again).embedding_dim == fitted.model_.embedding_dim


# -- 9. a table output never replaces an input file --------------------------------


def test_output_rule_a_table_output_never_replaces_an_input(
    checkpoint, images, tmp_path, capsys, monkeypatch
):
    def refuse(*args, **kwargs):
        raise AssertionError("work started before --output was checked")

    monkeypatch.setattr("sklearn_clip._base.load_model", refuse)
    rows = tmp_path / "rows.csv"
    paths = sorted(str(p) for p in images.glob("*.png"))
    pd.DataFrame({"image": paths}).to_csv(rows, index=False)
    before = rows.read_bytes()
    commands = {
        "embed": ["--table", str(rows), "--column", "image"],
        "zero-shot": ["--file-list", str(rows), "--labels", "red,blue"],
    }
    for command, inputs in commands.items():
        argv = [command, "--model", str(checkpoint), *inputs]
        assert main([*argv, "--output", str(rows), "--overwrite"]) == 2
        assert "overlaps the input" in _error_line(capsys, command)
    assert rows.read_bytes() == before


# -- 10. a command that needs PyTorch says so in one line --------------------------


def test_output_rule_missing_pytorch_is_one_line_in_search_and_export(
    checkpoint, images, tmp_path, without_torch
):
    commands = {
        "export": [str(checkpoint), str(tmp_path / "exported")],
        "search": ["--model", str(checkpoint), "--index", str(images), "--query", "x"],
    }
    for command, argv in commands.items():
        done = subprocess.run(
            [sys.executable, "-m", "sklearn_clip.cli", command, *argv],
            env=without_torch,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr[-3000:]
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"sklearn-clip {command}: error: ")
        assert "PyTorch" in line and "pip install torch" in line
    assert not (tmp_path / "exported").exists()
