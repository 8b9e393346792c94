"""What the subcommands share: reading inputs, writing outputs, common options.

Outputs are checked before any work is done and written atomically, by the
one writer in ``sklearn_clip._files`` (:func:`check_output`,
:func:`write_output`): a run that is killed, interrupted or fails leaves either
the complete new file or whatever was there before, never a truncated file
that parses cleanly.
"""

import argparse
from pathlib import Path

from sklearn_clip._cli.options import estimator_option

# check_output is re-exported: every subcommand checks its --output through it.
from sklearn_clip._files import check_output as check_output
from sklearn_clip._files import write_output
from sklearn_clip._options import DTYPE_NAMES, ON_ERROR_OPTIONS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class CommandError(Exception):
    """A user error: printed without a traceback, exit status 2."""


class AppendOverDefault(argparse.Action):
    """``action="append"`` whose first use replaces the default.

    argparse's own ``append`` adds to the default, which here is a named set
    (of templates, of prompts): ``--template X`` must mean X alone.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        held = getattr(namespace, self.dest)
        given = [] if held is self.default else list(held)
        setattr(namespace, self.dest, [*given, values])


def read_table(path):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise CommandError(f"no such table: {str(path)!r}")
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt"):
        return pd.read_csv(path)
    raise CommandError(f"tables must be .csv or .parquet; got {str(path)!r}")


def column(table, name, option):
    if name not in table.columns:
        raise CommandError(
            f"{option} {name!r} is not a column of the table; its columns are "
            f"{list(table.columns)!r}"
        )
    return table[name].tolist()


def image_files(folder, option):
    """The image and video files under ``folder`` (searched recursively), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CommandError(f"{option} must be a folder; got {str(folder)!r}")
    from sklearn_clip._encoding.video import VIDEO_SUFFIXES  # keeps --help light

    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    rows = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in suffixes)
    if not rows:
        raise CommandError(f"no image files (nor videos) found under {str(folder)!r}")
    return rows


def read_rows(args):
    """The rows to process: a folder of images, a file list, or a table column."""
    given = [x for x in (args.images, args.file_list, args.table) if x is not None]
    if len(given) != 1:
        raise CommandError("give exactly one of --images, --file-list or --table")
    if args.images is not None:
        return image_files(args.images, "--images")
    if args.file_list is not None:
        path = Path(args.file_list)
        if not path.is_file():
            raise CommandError(f"no such file list: {str(path)!r}")
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if args.column is None:
        raise CommandError("--table needs --column to name the column to read")
    return column(read_table(args.table), args.column, "--column")


def _write_npy(frame, path):
    import numpy as np

    with open(path, "wb") as handle:  # np.save would append .npy to the name
        np.save(handle, frame.select_dtypes("number").to_numpy(dtype="float32"))


_WRITERS = {
    ".parquet": lambda frame, path: frame.to_parquet(path),
    ".csv": lambda frame, path: frame.to_csv(path, index=False),
    ".npy": _write_npy,
}


def write_frame(frame, path):
    """Write ``frame`` to ``path`` (by its suffix) atomically; say so."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _WRITERS:
        raise CommandError(
            f"--output must end in {', '.join(_WRITERS)}; got {str(path)!r}"
        )
    write_output(path, lambda temporary: _WRITERS[suffix](frame, temporary))
    print(f"wrote {len(frame)} rows to {path}")


def positive_int(text):
    """An ``argparse`` type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


def add_output_options(parser, output_help, *, required=True, replaced="--output"):
    """``--output`` (described by ``output_help``) and ``--overwrite``, which
    replaces what ``replaced`` names."""
    parser.add_argument("--output", required=required, help=output_help)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {replaced} if it exists (by default an existing file is "
        "kept and the command stops before doing any work)",
    )


def add_model_options(parser, estimator, *, batch_note=None, dtype_help=None):
    """``--model``, ``--batch-size``, ``--device`` and ``--dtype``, as
    ``estimator`` takes them.

    ``estimator`` is a ``"module:Class"`` of :mod:`sklearn_clip._cli.options`,
    whose defaults and descriptions the options take; ``batch_note`` adds what
    the batch means to this command, ``dtype_help`` replaces the estimator's
    sentence on the precision.
    """
    estimator_option(
        parser,
        estimator,
        "model",
        "--model",
        # The estimator's sentence also offers Python handles, which no
        # command line can pass.
        help="hub id or local model directory",
    )
    estimator_option(
        parser,
        estimator,
        "batch_size",
        "--batch-size",
        type=positive_int,
        note=batch_note,
    )
    estimator_option(parser, estimator, "device", "--device")
    estimator_option(
        parser,
        estimator,
        "dtype",
        "--dtype",
        choices=["auto", *DTYPE_NAMES],
        help=dtype_help,
    )


def add_cache_option(parser, estimator):
    """``--cache-dir``, as ``estimator`` takes it."""
    estimator_option(
        parser,
        estimator,
        "cache_dir",
        "--cache-dir",
        note="A second run reads the embeddings from it.",
    )


def add_input_options(parser, estimator):
    """Where the rows come from, ``--on-error`` and ``--cache-dir`` as
    ``estimator`` takes them."""
    group = parser.add_argument_group("input (give exactly one)")
    group.add_argument("--images", help="a folder of images (searched recursively)")
    group.add_argument("--file-list", help="a text file with one path per line")
    group.add_argument("--table", help="a .csv or .parquet file; see --column")
    parser.add_argument("--column", help="the column of --table to read")
    estimator_option(
        parser, estimator, "on_error", "--on-error", choices=ON_ERROR_OPTIONS
    )
    add_cache_option(parser, estimator)


def add_video_options(parser):
    """``--frames`` or ``--fps``: how many frames of each video are embedded."""
    group = parser.add_argument_group("videos (files ending in .mp4, .mkv, ...)")
    sampling = group.add_mutually_exclusive_group()
    sampling.add_argument(
        "--frames",
        type=positive_int,
        help="frames per video, spread evenly over it (default: 8)",
    )
    sampling.add_argument(
        "--fps", type=_positive_float, help="frames per second of video instead"
    )


def video_option(args):
    """The estimators' ``video`` parameter from ``--frames`` / ``--fps``."""
    if args.fps is not None:
        return {"fps": args.fps}
    return None if args.frames is None else {"frames": args.frames}


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0; got {text!r}")
    return value


def frame_table(frames, rows):
    """A long table's first columns: each frame's ``input`` path, frame, time."""
    import pandas as pd

    inputs = [str(rows[row]) for row in frames["row"]]
    head = pd.DataFrame({"input": inputs, "frame": frames["frame"]})
    head["time"] = frames["time"].to_numpy()
    return head
