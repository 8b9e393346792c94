"""Checkpoint faults: reused directories, corrupted files, another base model, Ctrl-C.

Each test is one class of fault listed in ``docs/reliability.md`` ("Checkpoints
and resuming").
"""

import errno
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sklearn_clip import CLIPContrastiveFinetuner, cli, load_model
from sklearn_clip._train import contrastive as _contrastive
from sklearn_clip._train.checkpoints import CheckpointWarning, load_checkpoint
from sklearn_clip.datasets import make_shapes

ROOT = Path(__file__).resolve().parents[2]
TRAIN = {
    "learning_rate": 3e-3,
    "max_epochs": 3,
    "batch_size": 8,
    "caption_template": "a {} shape",
    "random_state": 0,
    # These tests follow validation, which is off by default.
    "validation_fraction": 0.1,
    "device": "cpu",
}


def _state(tuner):
    return {k: v.float() for k, v in tuner.model_.model.state_dict().items()}


def _assert_same(a, b):
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)


def _fit(fast_path, shapes, **params):
    return CLIPContrastiveFinetuner(fast_path, **{**TRAIN, **params}).fit(
        shapes.images, shapes.color
    )


# -- a reused checkpoint_dir ---------------------------------------------------
def test_runs_sharing_a_checkpoint_dir_keep_their_own_checkpoints(
    fast_path, shapes, tmp_path
):
    long = _fit(fast_path, shapes, max_epochs=4, checkpoint_dir=tmp_path)
    short = _fit(fast_path, shapes, max_epochs=2, checkpoint_dir=tmp_path)
    assert Path(long.checkpoint_).is_file() and Path(short.checkpoint_).is_file()
    assert Path(long.checkpoint_).parent != Path(short.checkpoint_).parent
    # Each run pruned only its own files: the newest two of each are there.
    names = {
        run.name: sorted(p.name for p in run.iterdir()) for run in tmp_path.iterdir()
    }
    assert sorted(names.values()) == [
        ["step-00000004.pt", "step-00000008.pt"],
        ["step-00000012.pt", "step-00000016.pt"],
    ]
    # And each resumes from its own.
    again = _fit(fast_path, shapes, max_epochs=4, checkpoint_dir=tmp_path, resume=True)
    _assert_same(_state(again), _state(long))


# -- corrupted checkpoints ----------------------------------------------------
def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty(path):
    path.write_bytes(b"")


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(4096))


@pytest.mark.parametrize("corrupt", [_truncate, _empty, _random_bytes])
def test_a_corrupted_newest_checkpoint_falls_back_to_the_newest_intact_one(
    fast_path, shapes, tmp_path, corrupt
):
    full = _fit(fast_path, shapes, checkpoint_dir=tmp_path)
    newest = Path(full.checkpoint_)
    corrupt(newest)
    # The epoch-2 checkpoint is intact: epoch 3 is trained again from it.
    with pytest.warns(CheckpointWarning, match=str(newest.name)):
        resumed = _fit(fast_path, shapes, checkpoint_dir=tmp_path, resume=True)
    assert resumed.n_iter_ == 3
    _assert_same(_state(resumed), _state(full))


def test_no_intact_checkpoint_names_the_files_and_never_advises_unsafe_loading(
    fast_path, shapes, tmp_path
):
    _fit(fast_path, shapes, max_epochs=2, checkpoint_dir=tmp_path)
    files = sorted(tmp_path.glob("run-*/step-*.pt"))
    _truncate(files[0])
    _random_bytes(files[1])
    with pytest.warns(CheckpointWarning), pytest.raises(ValueError) as error:
        _fit(fast_path, shapes, max_epochs=2, checkpoint_dir=tmp_path, resume=True)
    message = str(error.value)
    assert all(str(path) in message for path in files)
    assert "weights_only=False" not in message
    assert "not safe" in message


def test_a_checkpoint_of_another_format_is_refused_naming_both(tmp_path):
    path = tmp_path / "step-00000001.pt"
    torch.save({"format": 99, "progress": {"step": 1}}, path)
    with pytest.raises(ValueError, match="format 99.*reads format 1"):
        load_checkpoint(path)


# -- another base model -------------------------------------------------------
def test_resuming_from_another_base_model_of_the_same_architecture_is_refused(
    fast_path, shapes, tmp_path, make_fast_clip
):
    first = _fit(fast_path, shapes, max_epochs=1, checkpoint_dir=tmp_path)
    other = make_fast_clip(tmp_path / "other", random_state=1)
    with pytest.raises(ValueError, match="base_model differ"):
        _fit(other, shapes, max_epochs=1, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="base_model differ"):
        _fit(other, shapes, max_epochs=1, resume=first.checkpoint_)


# -- a full disk ----------------------------------------------------------------
def _disk_full_at_save(monkeypatch, n_saves):
    """``torch.save`` fails like a full disk from its ``n_saves``-th call on."""
    calls = {"n": 0}
    save = torch.save

    def save_until_full(obj, handle, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= n_saves:
            handle.write(b"PK\x03\x04 the start of a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_full)


def test_a_full_disk_keeps_the_last_good_checkpoint_and_says_what_to_do(
    fast_path, shapes, tmp_path, monkeypatch
):
    _disk_full_at_save(monkeypatch, n_saves=3)  # the epoch-3 checkpoint
    with pytest.raises(OSError) as error:
        _fit(fast_path, shapes, checkpoint_dir=tmp_path)
    (run,) = tmp_path.glob("run-*")
    message = str(error.value)
    assert error.value.errno == errno.ENOSPC
    assert f"in {run} (a checkpoint needs about " in message
    size = r"[\d.]+ [kMG]?B"
    assert re.search(f"needs about {size}; {size} is free there", message)
    assert f"The last good checkpoint, {run / 'step-00000008.pt'}, is kept" in message
    assert "checkpoint_dir on a disk with room" in message and "resume=True" in message
    # Nothing was pruned for the file that could not be written, nothing is left
    # half-written, and the last good checkpoint loads.
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        run.name,
        "step-00000004.pt",
        "step-00000008.pt",
    ]
    assert load_checkpoint(run / "step-00000008.pt")["progress"]["step"] == 8
    monkeypatch.undo()
    # With room again, the run continues from it to the same weights.
    resumed = _fit(fast_path, shapes, checkpoint_dir=tmp_path, resume=True)
    _assert_same(_state(resumed), _state(_fit(fast_path, shapes)))


# -- Ctrl-C in the command ----------------------------------------------------
def _pairs_table(directory, n):
    data = make_shapes(n, image_size=16, random_state=0)
    paths = [directory / f"{i}.png" for i in range(n)]
    for image, path in zip(data.images, paths):
        Image.fromarray(image).save(path)
    table = directory / "pairs.csv"
    pd.DataFrame({"image": map(str, paths), "caption": data.color}).to_csv(table)
    return table


def _interrupt_in_epoch_2(monkeypatch):
    calls = {"n": 0}
    original = _contrastive.contrastive_loss

    def loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # 4 training batches and 1 validation batch an epoch
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(_contrastive, "contrastive_loss", loss)


def test_an_interrupted_finetune_command_exits_non_zero_naming_the_checkpoint(
    fast_path, tmp_path, monkeypatch, capsys
):
    table = _pairs_table(tmp_path, 32)
    _interrupt_in_epoch_2(monkeypatch)
    command = ["finetune", "--model", str(fast_path), "--table", str(table)]
    command += ["--epochs", "3", "--batch-size", "8", "--device", "cpu"]
    command += [
        "--checkpoint-dir",
        str(tmp_path / "ck"),
        "--output",
        str(tmp_path / "out"),
    ]
    with (
        pytest.warns(UserWarning, match="interrupted"),
        pytest.raises(SystemExit) as exit_,
    ):
        cli.main(command)
    assert exit_.value.code == 130
    out, err = capsys.readouterr()
    # Epoch 1's checkpoint and the one written on the interruption.
    checkpoint = sorted((tmp_path / "ck").glob("run-*/step-*.pt"))[-1]
    assert f"the checkpoint {checkpoint} holds it" in err and "--resume" in err
    assert "saved the fine-tuned model" not in out and not (tmp_path / "out").exists()
    monkeypatch.undo()
    # The same command with --resume finishes the run and saves the model.
    assert cli.main([*command, "--resume"]) == 0
    assert load_model(tmp_path / "out", device="cpu").embedding_dim == 32


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
def test_ctrl_c_sent_to_the_finetune_command_exits_130(fast_path, tmp_path):
    table = _pairs_table(tmp_path, 400)
    command = [sys.executable, "-m", "sklearn_clip.cli", "finetune", "--model"]
    command += [fast_path, "--table", table, "--epochs", 1000, "--batch-size", 4]
    command += ["--device", "cpu", "--checkpoint-dir", tmp_path / "ck"]
    command += ["--output", tmp_path / "out"]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    child = subprocess.Popen(
        list(map(str, command)),
        env={**os.environ, "PYTHONPATH": path},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Press Ctrl-C once the first epoch's checkpoint is there.
    while child.poll() is None and not list((tmp_path / "ck").glob("run-*/step-*.pt")):
        try:
            child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=300)
    assert child.returncode == 130, stderr
    assert "interrupted" in stderr and "--resume" in stderr
    assert "saved the fine-tuned model" not in stdout
    assert not (tmp_path / "out").exists()
