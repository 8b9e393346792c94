"""What the subcommands share: reading inputs, writing outputs, common options."""

from pathlib import Path

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


def read_rows(args):
    """The rows to process: a folder of images, a file list, or a table column."""
    given = [x for x in (args.images, args.file_list, args.table) if x is not None]
    if len(given) != 1:
        raise CommandError("give exactly one of --images, --file-list or --table")
    if args.images is not None:
        folder = Path(args.images)
        if not folder.is_dir():
            raise CommandError(f"--images must be a folder; got {str(folder)!r}")
        rows = sorted(
            str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not rows:
            raise CommandError(f"no image files found under {str(folder)!r}")
        return rows
    if args.file_list is not None:
        path = Path(args.file_list)
        if not path.is_file():
            raise CommandError(f"no such file list: {str(path)!r}")
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if args.column is None:
        raise CommandError("--table needs --column to name the column to read")
    return column(read_table(args.table), args.column, "--column")


def write_frame(frame, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".npy":
        import numpy as np

        np.save(path, frame.select_dtypes("number").to_numpy(dtype="float32"))
    else:
        raise CommandError(f"--output must end in .parquet, .csv or .npy; got {path}")
    print(f"wrote {len(frame)} rows to {path}")


def add_model_options(parser):
    parser.add_argument(
        "--model",
        default="openai/clip-vit-base-patch32",
        help="hub id or local model directory (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
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
            choices=["raise", "nan"],
            default="raise",
            help="unreadable images: stop (raise) or give NaN rows",
        )
