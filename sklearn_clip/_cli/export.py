"""``sklearn-clip export``: a model for ONNX Runtime or OpenVINO, without PyTorch."""

from sklearn_clip._options import EXPORT_BACKENDS


def register(commands):
    parser = commands.add_parser(
        "export",
        help="export a model for ONNX Runtime or OpenVINO (optionally int8)",
        description="Export a model's image and text towers into a directory "
        "that load_model and every inference estimator read, with or without "
        "PyTorch installed.",
    )
    parser.add_argument("model", help="hub id or local model directory")
    parser.add_argument("output", help="the directory to write")
    parser.add_argument("--backend", choices=EXPORT_BACKENDS, default="onnx")
    parser.add_argument(
        "--quantize",
        choices=("int8",),
        default=None,
        help="store the matrix weights in 8 bits (default: float32)",
    )
    parser.add_argument("--revision", help="hub branch, tag or commit to pin")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the output directory if it exists",
    )
    parser.set_defaults(run=run)


def run(args):
    from sklearn_clip._loader.export import export_model

    path = export_model(
        args.model,
        args.output,
        backend=args.backend,
        quantize=args.quantize,
        revision=args.revision,
        overwrite=args.overwrite,
    )
    size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    precision = args.quantize or "float32"
    print(
        f"wrote a {args.backend} {precision} export ({size / 2**20:.1f} MiB) to {path}"
    )
