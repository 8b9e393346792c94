"""``sklearn-clip export``: a model for ONNX Runtime or OpenVINO, without PyTorch."""

import argparse
import functools

from sklearn_clip._cli.common import CommandError
from sklearn_clip._cli.options import EXPORT, estimator_option
from sklearn_clip._options import EXPORT_BACKENDS, QUANTIZATIONS


def register(commands):
    parser = commands.add_parser(
        "export",
        help="export a model for ONNX Runtime or OpenVINO (optionally int8)",
        description="Export a model's image and text towers into a directory "
        "that load_model and every inference estimator read, with or without "
        "PyTorch installed.",
    )
    option = functools.partial(estimator_option, parser, EXPORT)
    parser.add_argument("--model", help="hub id or local model directory")
    parser.add_argument("--output", help="the directory to write")
    # The form of earlier releases, "export MODEL OUTPUT", still reads.
    parser.add_argument("legacy", nargs="*", metavar="", help=argparse.SUPPRESS)
    option("backend", "--backend", choices=EXPORT_BACKENDS)
    option(
        "quantize",
        "--quantize",
        choices=[q for q in QUANTIZATIONS if q is not None],
        note="None keeps float32.",
    )
    option("revision", "--revision")
    option(
        "overwrite",
        "--overwrite",
        action="store_true",
        help="replace the output directory if it is an earlier export",
    )
    parser.set_defaults(run=run)


def run(args):
    from sklearn_clip._loader.export import export_model

    _read_legacy_positionals(args)
    path = export_model(
        args.model,
        args.output,
        backend=args.backend,
        quantize=args.quantize,
        revision=args.revision,
        overwrite=args.overwrite,
        progress=True,
    )
    size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    precision = args.quantize or "float32"
    print(
        f"wrote a {args.backend} {precision} export ({size / 2**20:.1f} MiB) to {path}"
    )


def _read_legacy_positionals(args):
    """``export MODEL OUTPUT``, as earlier releases wrote it, read as the options."""
    given = list(args.legacy)
    if given and args.model is None:
        args.model = given.pop(0)
    if given and args.output is None:
        args.output = given.pop(0)
    if given:
        raise CommandError(
            f"unexpected arguments {given!r}: give the model as --model and the "
            "directory to write as --output"
        )
    if args.model is None or args.output is None:
        raise CommandError(
            "--model and --output are required: the model to export and the "
            "directory to write"
        )
