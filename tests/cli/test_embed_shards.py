"""``sklearn-clip embed --output FOLDER/``: fixed-size parquet shards, resumable."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sklearn_clip import CLIPEmbeddingTransformer, clear_model_cache
from sklearn_clip._cli.shards import read_shards
from sklearn_clip.cli import main
from sklearn_clip.toy import make_tiny_clip

pytest.importorskip("pyarrow")

SHARD_SIZE = 8


def _write_images(folder, n, start=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for i in range(start, start + n):
        pixels = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:04d}.png")


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    _write_images(images, 20)
    (images / "0007.png").write_bytes(b"not an image")  # row 7 cannot be read
    return images


def _embed(model, images, output, *extra):
    return main(
        [
            "embed",
            "--model",
            str(model),
            "--device",
            "cpu",
            "--images",
            str(images),
            "--output",
            f"{output}{os.sep}",
            "--shard-size",
            str(SHARD_SIZE),
            "--batch-size",
            "3",
            *extra,
        ]
    )


def _shard_files(output):
    return sorted(Path(output).glob("shard-*.parquet"))


def test_shards_hold_every_row_in_order_with_status(tiny_clip_path, folder, tmp_path):
    out = tmp_path / "out"
    assert _embed(tiny_clip_path, folder, out, "--on-error", "nan") == 0

    files = _shard_files(out)
    assert [len(pd.read_parquet(f)) for f in files] == [8, 8, 4]
    shards = read_shards(out)
    paths = sorted(str(p) for p in folder.glob("*.png"))
    assert shards["path"].tolist() == paths
    assert shards["status"].tolist() == ["error" if i == 7 else "ok" for i in range(20)]
    assert shards["error"].notna().tolist() == [i == 7 for i in range(20)]
    assert "UnidentifiedImageError" in shards["error"][7]
    assert " at 0x" not in shards["error"][7]  # no memory address

    embeddings = np.stack(shards["embedding"].to_numpy())
    expected = CLIPEmbeddingTransformer(tiny_clip_path, device="cpu", on_error="nan")
    with pytest.warns(UserWarning, match="could not be read"):
        expected = expected.fit_transform(paths)
    np.testing.assert_allclose(embeddings, expected, atol=1e-6)
    assert embeddings.dtype == np.float32 and np.isnan(embeddings[7]).all()


def test_rerun_skips_complete_shards_and_redoes_only_missing(
    tiny_clip_path, folder, tmp_path, capsys
):
    out = tmp_path / "out"
    _embed(tiny_clip_path, folder, out, "--on-error", "nan")
    first = read_shards(out)
    files = _shard_files(out)
    files[1].unlink()  # as if the run had stopped while embedding shard 1
    kept = {f: f.stat().st_mtime_ns for f in (files[0], files[2])}
    (out / ".shard-00001.parquet.99.tmp").write_bytes(b"partial")  # a killed write
    capsys.readouterr()

    assert _embed(tiny_clip_path, folder, out, "--on-error", "nan") == 0

    printed = capsys.readouterr().out
    assert "resuming: 2 of 3 shards" in printed
    assert f"embedded {SHARD_SIZE} rows (0 failed) into 1 new shards" in printed
    assert {f: f.stat().st_mtime_ns for f in kept} == kept  # not rewritten
    assert not list(out.glob(".*tmp"))
    pd.testing.assert_frame_equal(read_shards(out), first)


def test_folder_of_another_run_is_refused(tiny_clip_path, folder, tmp_path, capsys):
    out = tmp_path / "out"
    _embed(tiny_clip_path, folder, out, "--on-error", "nan")
    _write_images(folder, 1, start=20)  # the input list changed
    capsys.readouterr()

    assert _embed(tiny_clip_path, folder, out, "--on-error", "nan") == 2
    error = capsys.readouterr().err
    assert "holds shards of another run" in error and "rows_sha256" in error


def test_shards_of_other_weights_at_the_same_path_are_refused(
    tiny_clip_path, folder, tmp_path, capsys, isolated_cache
):
    model = shutil.copytree(tiny_clip_path, tmp_path / "model")
    out = tmp_path / "out"
    _embed(model, folder, out, "--on-error", "nan")
    _shard_files(out)[-1].unlink()  # an unfinished run
    shutil.rmtree(model)
    make_tiny_clip(model, random_state=1)  # other weights, the same path
    clear_model_cache()  # as a new process would see them
    capsys.readouterr()

    assert _embed(model, folder, out, "--on-error", "nan") == 2
    error = capsys.readouterr().err
    assert "model_fingerprint" in error and "not those the shards" in error
    assert error.count("\n") == 1 and len(_shard_files(out)) == 2


def test_rerun_embeds_again_the_rows_of_files_changed_under_their_name(
    tiny_clip_path, folder, tmp_path, capsys
):
    out = tmp_path / "out"
    _embed(tiny_clip_path, folder, out, "--on-error", "nan")
    changed = folder / "0009.png"  # in shard 1
    kept = {f: f.stat().st_mtime_ns for f in _shard_files(out)}
    before = read_shards(out)
    Image.fromarray(np.full((10, 10, 3), 200, np.uint8)).save(changed)
    capsys.readouterr()

    assert _embed(tiny_clip_path, folder, out, "--on-error", "nan") == 0
    assert "embedded 1 rows (0 failed)" in capsys.readouterr().out
    after = read_shards(out)
    expected = CLIPEmbeddingTransformer(tiny_clip_path, device="cpu")
    expected = expected.fit_transform([str(changed)])[0]
    np.testing.assert_allclose(after["embedding"][9], expected, atol=1e-6)
    unchanged = after.index != 9
    pd.testing.assert_frame_equal(
        after[unchanged].drop(columns="mtime_ns"),
        before[unchanged].drop(columns="mtime_ns"),
    )
    rewritten = [f for f in kept if f.stat().st_mtime_ns != kept[f]]
    assert [f.name for f in rewritten] == ["shard-00001.parquet"]


def test_text_shards_resume_without_file_stamps(tiny_clip_path, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"caption {i}\n" for i in range(10)))
    argv = ["embed", "--model", str(tiny_clip_path), "--device", "cpu"]
    argv += ["--modality", "text", "--file-list", str(texts), "--shard-size", "4"]
    argv += ["--output", f"{tmp_path / 'out'}{os.sep}"]
    assert main(argv) == 0
    first = read_shards(tmp_path / "out")
    assert first["size"].isna().all()
    capsys.readouterr()
    assert main(argv) == 0
    assert "embedded 0 rows" in capsys.readouterr().out
    pd.testing.assert_frame_equal(read_shards(tmp_path / "out"), first)


def test_the_output_folder_reads_as_one_parquet_table(tiny_clip_path, folder, tmp_path):
    out = tmp_path / "out"
    _embed(tiny_clip_path, folder, out, "--on-error", "nan")
    table = pd.read_parquet(out)
    pd.testing.assert_frame_equal(table, read_shards(out))


def test_a_folder_with_the_old_manifest_name_resumes(
    tiny_clip_path, folder, tmp_path, capsys
):
    out = tmp_path / "out"
    _embed(tiny_clip_path, folder, out, "--on-error", "nan")
    expected = read_shards(out)
    old = json.loads((out / "_manifest.json").read_text())
    del old["model_fingerprint"]  # what an older version wrote, under its name
    (out / "manifest.json").write_text(json.dumps(old))
    (out / "_manifest.json").unlink()

    assert _embed(tiny_clip_path, folder, out, "--on-error", "nan") == 0
    assert not (out / "manifest.json").exists()
    assert "model_fingerprint" in json.loads((out / "_manifest.json").read_text())
    pd.testing.assert_frame_equal(read_shards(out), expected)


def test_chunk_where_every_row_fails_names_each_row(tiny_clip_path, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("0000.png", "0001.png", "0002.png"):
        (images / name).write_bytes(b"broken")
    out = tmp_path / "out"
    assert _embed(tiny_clip_path, images, out, "--on-error", "nan") == 0
    shards = read_shards(out)
    assert shards["status"].tolist() == ["error"] * 3
    assert all("UnidentifiedImageError" in e for e in shards["error"])


def test_first_bad_row_stops_under_raise_leaving_complete_shards(
    tiny_clip_path, folder, tmp_path
):
    out = tmp_path / "out"
    assert _embed(tiny_clip_path, folder, out) == 2  # row 7 is in shard 0
    assert _shard_files(out) == []


# -- interrupted runs, in a subprocess -------------------------------------------
# The run is stopped as soon as its first shard is written, with many shards to
# go: the exit status shows it was stopped, not finished.

N_MANY, MANY_SHARD = 1_200, 100


def _start(model, images, output):
    command = [
        sys.executable,
        "-m",
        "sklearn_clip.cli",
        "embed",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--images",
        str(images),
        "--output",
        f"{output}{os.sep}",
        "--shard-size",
        str(MANY_SHARD),
        "--batch-size",
        "16",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _stop_after_first_shard(process, output, signal_number, timeout=900):
    deadline = time.monotonic() + timeout
    while not (output / "shard-00000.parquet").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no shard was written"
        time.sleep(0.02)
    process.send_signal(signal_number)
    return process.communicate(timeout=timeout)


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    images = tmp_path_factory.mktemp("many-images")
    _write_images(images, N_MANY)
    return images


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_output(
    tiny_clip_path, many_images, tmp_path
):
    out = tmp_path / "out"
    process = _start(tiny_clip_path, many_images, out)
    _stop_after_first_shard(process, out, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    kept = {f: f.stat().st_mtime_ns for f in _shard_files(out)}
    n_shards = N_MANY // MANY_SHARD
    assert 1 <= len(kept) < n_shards

    resumed = _start(tiny_clip_path, many_images, out)
    printed, errors = resumed.communicate()
    assert resumed.returncode == 0, errors
    assert f"resuming: {len(kept)} of {n_shards} shards" in printed
    # Only the rows of the shards not kept were embedded: none twice.
    todo = N_MANY - len(kept) * MANY_SHARD
    assert f"embedded {todo} rows (0 failed) into {n_shards - len(kept)}" in printed
    assert {f: f.stat().st_mtime_ns for f in kept} == kept
    assert not list(out.glob(".*tmp"))

    reference = tmp_path / "reference"
    assert _start(tiny_clip_path, many_images, reference).wait() == 0
    pd.testing.assert_frame_equal(read_shards(out), read_shards(reference))


@pytest.mark.slow
def test_ctrl_c_leaves_only_complete_shards(tiny_clip_path, many_images, tmp_path):
    out = tmp_path / "out"
    process = _start(tiny_clip_path, many_images, out)
    printed, _ = _stop_after_first_shard(process, out, signal.SIGINT)
    assert process.returncode == 130
    complete = _shard_files(out)
    assert f"interrupted: {len(complete)} of 12 shards are complete" in printed
    assert sorted(f.name for f in out.iterdir()) == sorted(
        ["_manifest.json", *(f.name for f in complete)]
    )
    assert all(len(pd.read_parquet(f)) == MANY_SHARD for f in complete)
