"""What the subcommands share: reading inputs, writing outputs, common options.

Outputs are checked before any work is done (:func:`check_output`) and written
atomically (:func:`write_frame`): a run that is killed, interrupted or fails
leaves either the complete new file or whatever was there before, never a
truncated file that parses cleanly.
"""

import argparse
import os
from pathlib import Path

from sklearn_clip._files import replaced_atomically
from sklearn_clip._options import ON_ERROR_OPTIONS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class CommandError(Exception):
    """A user error: printed without a traceback, exit status 2."""


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
    """The image files under ``folder`` (searched recursively), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CommandError(f"{option} must be a folder; got {str(folder)!r}")
    rows = sorted(
        str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not rows:
        raise CommandError(f"no image files found under {str(folder)!r}")
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


def check_output(path, suffixes, *, overwrite=False):
    """Refuse an ``--output`` that cannot or must not be written, before any work.

    The suffix must be one of ``suffixes``; the path must not be a directory;
    its nearest existing parent must be a writable directory (missing ones
    are created when the output is written); an existing file is replaced
    only with ``overwrite``.
    """
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise CommandError(
            f"--output must end in {', '.join(suffixes)}; got {str(path)!r}"
        )
    if path.is_dir():
        raise CommandError(
            f"--output {str(path)!r} is a directory; give a file name in it, "
            f"such as {str(path / ('output' + suffixes[0]))!r}"
        )
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise CommandError(
                f"--output {str(path)!r} exists; pass --overwrite to replace it"
            )
        if not path.is_file():
            raise CommandError(f"--output {str(path)!r} is not a regular file")
    parent = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not parent.is_dir():
        raise CommandError(
            f"--output {str(path)!r} cannot be created: {str(parent)!r} is a file, "
            "not a directory"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CommandError(f"--output {str(path)!r}: cannot write in {str(parent)!r}")
    return path


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
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as temporary:
        _WRITERS[suffix](frame, temporary)
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


def add_output_options(parser, suffixes):
    """``--output`` (a file ending in one of ``suffixes``) and ``--overwrite``."""
    parser.add_argument("--output", required=True, help=" or ".join(suffixes))
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --output if it exists (by default an existing file is kept "
        "and the command stops before doing any work)",
    )


def add_model_options(parser):
    parser.add_argument(
        "--model",
        default="openai/clip-vit-base-patch32",
        help="hub id or local model directory (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")


def add_input_options(parser, *, with_errors=True):
    group = parser.add_argument_group("input (give exactly one)")
    group.add_argument("--images", help="a folder of images (searched recursively)")
    group.add_argument("--file-list", help="a text file with one path per line")
    group.add_argument("--table", help="a .csv or .parquet file; see --column")
    parser.add_argument("--column", help="the column of --table to read")
    if with_errors:
        parser.add_argument(
            "--on-error",
            choices=ON_ERROR_OPTIONS,
            default="raise",
            help="unreadable images: stop (raise) or give NaN rows",
        )
