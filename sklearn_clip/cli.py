"""The ``sklearn-clip`` command: embed, zero-shot, finetune and the offline demo.

Every subcommand is a thin layer over the public estimators, so what the command
does can be done in Python with the same objects.
"""

import argparse
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class CommandError(Exception):
    """A user error: printed without a traceback, exit status 2."""


def _read_table(path):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise CommandError(f"no such table: {str(path)!r}")
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt"):
        return pd.read_csv(path)
    raise CommandError(f"tables must be .csv or .parquet; got {str(path)!r}")


def _column(table, name, option):
    if name not in table.columns:
        raise CommandError(
            f"{option} {name!r} is not a column of the table; its columns are "
            f"{list(table.columns)!r}"
        )
    return table[name].tolist()


def _read_rows(args):
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
    return _column(_read_table(args.table), args.column, "--column")


def _write_frame(frame, path):
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


def _embed(args):
    import pandas as pd

    from sklearn_clip import CLIPEmbeddingTransformer

    rows = _read_rows(args)
    embedder = CLIPEmbeddingTransformer(
        model=args.model,
        modality=args.modality,
        batch_size=args.batch_size,
        device=args.device,
        on_error=args.on_error,
        progress=True,
    ).set_output(transform="pandas")
    embeddings = embedder.fit_transform(rows)
    frame = pd.concat(
        [pd.DataFrame({"input": rows}), embeddings.reset_index(drop=True)], axis=1
    )
    _write_frame(frame, args.output)


def _labels(args):
    if args.labels_file is not None:
        labels = Path(args.labels_file).read_text().splitlines()
    else:
        labels = args.labels.split(",")
    labels = [label.strip() for label in labels if label.strip()]
    if len(labels) < 2:
        raise CommandError("give at least two labels (--labels 'cat,dog')")
    return labels


def _zero_shot(args):
    import pandas as pd

    from sklearn_clip import CLIPZeroShotClassifier

    rows = _read_rows(args)
    templates = args.template[0] if len(args.template) == 1 else tuple(args.template)
    classifier = CLIPZeroShotClassifier(
        model=args.model,
        candidate_labels=_labels(args),
        templates=templates,
        batch_size=args.batch_size,
        device=args.device,
        on_error=args.on_error,
        progress=True,
    ).fit(None)
    probabilities = classifier.predict_proba(rows)
    frame = pd.DataFrame(
        probabilities, columns=[f"proba_{label}" for label in classifier.classes_]
    )
    frame.insert(0, "prediction", classifier.classes_[probabilities.argmax(axis=1)])
    frame.insert(0, "input", rows)
    _write_frame(frame, args.output)


def _finetune(args):
    from sklearn_clip import CLIPContrastiveFinetuner

    table = _read_table(args.table)
    images = _column(table, args.image_column, "--image-column")
    texts = _column(table, args.text_column, "--text-column")
    tuner = CLIPContrastiveFinetuner(
        model=args.model,
        learning_rate=args.learning_rate,
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        device=args.device,
        random_state=args.seed,
        progress=True,
    ).fit(images, texts)
    for record in tuner.history_:
        print(
            "  ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in record.items()
            )
        )
    tuner.save_pretrained(args.output)
    print(f"saved the fine-tuned model to {args.output}")


def _demo(args):
    from sklearn_clip.demo import run_demo

    run_demo(
        args.output,
        n_train=args.n_train,
        max_epochs=args.epochs,
        random_state=args.seed,
        verbose=True,
    )


def _add_model_options(parser):
    parser.add_argument(
        "--model",
        default="openai/clip-vit-base-patch32",
        help="hub id or local model directory (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")


def _add_input_options(parser, *, with_errors=True):
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


def build_parser():
    """The argument parser of the ``sklearn-clip`` command."""
    parser = argparse.ArgumentParser(
        prog="sklearn-clip",
        description="CLIP embeddings, zero-shot classification and fine-tuning.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="train a small CLIP offline on generated shapes, then zero-shot",
        description="Train a small CLIP from random weights on generated (image, "
        "caption) pairs, then classify held-out images zero-shot from prompts.",
    )
    demo.add_argument(
        "--output",
        default="sklearn-clip-demo",
        help="folder for plots, results and the model (%(default)s)",
    )
    demo.add_argument(
        "--n-train",
        type=int,
        default=8000,
        help="generated training pairs (%(default)s)",
    )
    demo.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs (default: the demo's tuned value)",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

    embed = commands.add_parser(
        "embed",
        help="embed images or texts to a .parquet, .csv or .npy file",
        description="Embed images (or texts) and write one row per input.",
    )
    _add_model_options(embed)
    _add_input_options(embed)
    embed.add_argument("--modality", choices=["image", "text"], default="image")
    embed.add_argument("--output", required=True, help=".parquet, .csv or .npy")
    embed.set_defaults(run=_embed)

    zero_shot = commands.add_parser(
        "zero-shot",
        help="classify images from label names and prompt templates",
        description="Zero-shot classification: a CSV of predictions and probabilities.",
    )
    _add_model_options(zero_shot)
    _add_input_options(zero_shot)
    zero_shot.add_argument("--labels", help="comma-separated label names")
    zero_shot.add_argument("--labels-file", help="a text file with one label per line")
    zero_shot.add_argument(
        "--template",
        action="append",
        default=None,
        help="a prompt with {} for the label, or a named set "
        "(repeat to ensemble; default: 'a photo of a {}.')",
    )
    zero_shot.add_argument("--output", required=True, help=".csv or .parquet")
    zero_shot.set_defaults(run=_zero_shot)

    finetune = commands.add_parser(
        "finetune",
        help="fine-tune on a table of image paths and captions",
        description="Fine-tune both encoders on (image, caption) pairs and save the "
        "model with save_pretrained.",
    )
    _add_model_options(finetune)
    finetune.add_argument("--table", required=True, help=".csv or .parquet of pairs")
    finetune.add_argument("--image-column", default="image")
    finetune.add_argument("--text-column", default="caption")
    finetune.add_argument("--epochs", type=int, default=5)
    finetune.add_argument("--learning-rate", type=float, default=1e-5)
    finetune.add_argument("--seed", type=int, default=0)
    finetune.add_argument("--output", required=True, help="folder for the model")
    finetune.set_defaults(run=_finetune)
    return parser


def main(argv=None):
    """Run the ``sklearn-clip`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if getattr(args, "template", "unset") is None:
        args.template = ["a photo of a {}."]
    try:
        args.run(args)
    except (CommandError, OSError, ValueError) as exc:
        print(f"sklearn-clip {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
