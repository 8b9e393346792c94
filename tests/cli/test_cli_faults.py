"""The command line never leaves a half-written result, and fails early and briefly.

Outputs are written to a temporary file beside them and renamed; ``--output``
is checked before any model is loaded or image read; argument errors exit 2
with one line. docs/reliability.md lists these fault classes and tests.
"""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sklearn_clip import _base
from sklearn_clip._cli.common import CommandError, write_frame
from sklearn_clip.cli import main


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-images")
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 256, (16, 16, 3), np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a model is loaded or a row encoded."""

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(_base, "load_model", refuse)
    monkeypatch.setattr(_base, "encode_rows", refuse)


def _one_line_error(capsys, *fragments):
    err = capsys.readouterr().err
    # Progress bars (loading weights) may share stderr; the error is one line.
    (line,) = [line for line in err.splitlines() if line.startswith("sklearn-clip")]
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in line, err
    return line


# -- 9. outputs are written atomically ---------------------------------------------

_KILLED_MID_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    import pandas as pd
    from sklearn_clip._cli.common import write_frame

    def write_half_then_die(frame, path, **kwargs):
        text = frame.to_string()
        with open(path, "w") as handle:
            handle.write(text[: len(text) // 2])
            handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    pd.DataFrame.to_csv = write_half_then_die
    write_frame(pd.DataFrame({"x": range(20000)}), sys.argv[1])
    """
)


def test_a_write_killed_midway_leaves_the_old_output_whole(tmp_path):
    out = tmp_path / "embeddings.csv"
    pd.DataFrame({"x": [1, 2, 3]}).to_csv(out, index=False)
    before = out.read_bytes()
    result = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_WRITE, str(out)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == -signal.SIGKILL
    assert out.read_bytes() == before
    # What the killed process could not clean up is a hidden temporary file,
    # never a file under the output's name.
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p != out)
    assert len(leftovers) == 1 and leftovers[0].startswith(".embeddings.csv.")
    assert leftovers[0].endswith(".tmp")


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npy"])
def test_a_failed_write_leaves_no_file_and_no_temporary(tmp_path, monkeypatch, suffix):
    def fail_midway(frame, path, **kwargs):
        with open(path, "w") as handle:
            handle.write("partial")
        raise OSError("No space left on device")

    def fail_midway_npy(handle, array, **kwargs):
        handle.write(b"partial")
        raise OSError("No space left on device")

    for method in ["to_csv", "to_parquet"]:
        monkeypatch.setattr(pd.DataFrame, method, fail_midway)
    monkeypatch.setattr(np, "save", fail_midway_npy)
    with pytest.raises(OSError, match="No space left"):
        write_frame(pd.DataFrame({"x": [1.0]}), tmp_path / f"out{suffix}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npy"])
def test_a_written_output_has_the_usual_mode_and_content(tmp_path, suffix):
    out = tmp_path / "sub" / f"out{suffix}"
    frame = pd.DataFrame({"input": ["a", "b"], "clip_0": [0.5, -0.25]})
    write_frame(frame, out)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(out), [[0.5], [-0.25]])
    else:
        read = pd.read_csv if suffix == ".csv" else pd.read_parquet
        pd.testing.assert_frame_equal(read(out), frame)
    assert [p.name for p in out.parent.iterdir()] == [out.name]


# -- 10. --output is checked before any work ------------------------------------------


def _bad_outputs(tmp_path):
    a_file = tmp_path / "a-file.csv"
    a_file.write_text("x\n1\n")
    (tmp_path / "a-folder.csv").mkdir()
    return {
        "wrong suffix": (tmp_path / "out.txt", "must end in"),
        "a directory": (tmp_path / "a-folder.csv", "is a directory"),
        "parent is a file": (a_file / "out.csv", "is a file, not a directory"),
        "an existing file": (a_file, "exists; pass --overwrite"),
    }


@pytest.mark.parametrize(
    ("command", "case"),
    [
        (command, case)
        for command in ("embed", "zero-shot")
        for case in (
            "wrong suffix",
            "a directory",
            "parent is a file",
            "an existing file",
        )
        # embed writes parquet shards into a folder (tests/cli/test_embed_shards.py)
        if not (command == "embed" and case == "a directory")
    ],
)
def test_a_bad_output_is_refused_before_any_work(
    tiny_clip_path, images, tmp_path, capsys, no_work, case, command
):
    output, message = _bad_outputs(tmp_path)[case]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    argv = [command, "--model", tiny_clip_path, "--images", str(images)]
    argv += ["--output", str(output)]
    if command == "zero-shot":
        argv += ["--labels", "red,blue"]
    assert main(argv) == 2
    _one_line_error(capsys, f"sklearn-clip {command}: error: --output", message)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def test_overwrite_replaces_an_existing_output(tiny_clip_path, images, tmp_path):
    out = tmp_path / "emb.csv"
    out.write_text("old\n")
    argv = ["embed", "--model", tiny_clip_path, "--images", str(images)]
    argv += ["--output", str(out), "--overwrite"]
    assert main(argv) == 0
    assert len(pd.read_csv(out)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.csv"]


def test_check_output_refuses_an_unwritable_folder(tmp_path):
    from sklearn_clip._cli.common import check_output

    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # running as root: permissions do not bind
            return
        with pytest.raises(CommandError, match="cannot write in"):
            check_output(folder / "new" / "out.csv", (".csv",))
    finally:
        folder.chmod(0o700)


# -- 11. argument errors exit 2 with one line ---------------------------------------


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "give exactly one of --labels"),
        (["--labels", "a,b", "--labels-file", "l.txt"], "give exactly one of"),
        (["--labels-file", "no-such-labels.txt"], "no such labels file"),
        (["--labels", "cat, ,"], "at least two labels"),
    ],
    ids=["none", "both", "missing file", "one label"],
)
def test_zero_shot_label_errors_exit_2_with_one_line(
    tiny_clip_path, images, tmp_path, capsys, no_work, labels, message
):
    argv = ["zero-shot", "--model", tiny_clip_path, "--images", str(images)]
    assert main([*argv, "--output", str(tmp_path / "p.csv"), *labels]) == 2
    _one_line_error(capsys, message)
    assert not (tmp_path / "p.csv").exists()


def test_zero_shot_without_labels_from_the_shell(tiny_clip_path, images, tmp_path):
    argv = ["zero-shot", "--model", tiny_clip_path, "--images", str(images)]
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_clip.cli", *argv]
        + ["--output", str(tmp_path / "p.csv")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("sklearn-clip zero-shot: error: give exactly one")


def test_a_multi_line_error_is_printed_on_one_line(
    tiny_clip_path, images, tmp_path, capsys, monkeypatch
):
    def fail(*args, **kwargs):
        raise ValueError("first line\n\n  second line\n")

    monkeypatch.setattr(_base, "encode_rows", fail)
    argv = ["embed", "--model", tiny_clip_path, "--images", str(images)]
    assert main([*argv, "--output", str(tmp_path / "e.csv")]) == 2
    _one_line_error(capsys, "error: first line; second line")


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_batch_size_below_one_is_an_argument_error(tiny_clip_path, capsys, value):
    with pytest.raises(SystemExit) as exit:
        main(["embed", "--model", tiny_clip_path, "--batch-size", value])
    assert exit.value.code == 2
    assert "must be a positive integer" in capsys.readouterr().err


def test_an_interrupted_run_exits_130_and_writes_nothing(
    tiny_clip_path, images, tmp_path, capsys, monkeypatch
):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_base, "encode_rows", interrupt)
    argv = ["embed", "--model", tiny_clip_path, "--images", str(images)]
    assert main([*argv, "--output", str(tmp_path / "e.csv")]) == 130
    _one_line_error(capsys, "sklearn-clip embed: interrupted")
    assert list(tmp_path.iterdir()) == []


def test_a_subcommand_may_return_its_own_exit_status(monkeypatch):
    from sklearn_clip._cli import embed

    monkeypatch.setattr(embed, "run", lambda args: 3)
    assert main(["embed", "--images", ".", "--output", "x.csv"]) == 3
