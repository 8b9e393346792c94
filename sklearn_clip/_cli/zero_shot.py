"""``sklearn-clip zero-shot``: predictions and probabilities from label names."""

from pathlib import Path

from sklearn_clip._cli.common import (
    CommandError,
    add_input_options,
    add_model_options,
    add_output_options,
    check_output,
    read_rows,
    write_frame,
)

DEFAULT_TEMPLATE = "a photo of a {}."
OUTPUT_SUFFIXES = (".csv", ".parquet")


def register(commands):
    parser = commands.add_parser(
        "zero-shot",
        help="classify images from label names and prompt templates",
        description="Zero-shot classification: a CSV of predictions and probabilities.",
    )
    add_model_options(parser)
    add_input_options(parser)
    parser.add_argument("--labels", help="comma-separated label names")
    parser.add_argument("--labels-file", help="a text file with one label per line")
    parser.add_argument(
        "--template",
        action="append",
        default=None,
        help="a prompt with {} for the label, or a named set "
        f"(repeat to ensemble; default: {DEFAULT_TEMPLATE!r})",
    )
    add_output_options(parser, OUTPUT_SUFFIXES)
    parser.set_defaults(run=run)


def _labels(args):
    if (args.labels is None) == (args.labels_file is None):
        raise CommandError(
            "give exactly one of --labels (comma-separated, e.g. --labels 'cat,dog') "
            "or --labels-file (one label per line)"
        )
    if args.labels_file is not None:
        path = Path(args.labels_file)
        if not path.is_file():
            raise CommandError(f"no such labels file: {str(path)!r}")
        labels = path.read_text().splitlines()
    else:
        labels = args.labels.split(",")
    labels = [label.strip() for label in labels if label.strip()]
    if len(labels) < 2:
        raise CommandError("give at least two labels (--labels 'cat,dog')")
    return labels


def run(args):
    import pandas as pd

    from sklearn_clip import CLIPZeroShotClassifier

    # Every argument is checked before any model is loaded or image read.
    check_output(
        args.output,
        OUTPUT_SUFFIXES,
        overwrite=args.overwrite,
        inputs=(args.file_list, args.table, args.labels_file),
    )
    labels = _labels(args)
    rows = read_rows(args)
    template = args.template or [DEFAULT_TEMPLATE]
    templates = template[0] if len(template) == 1 else tuple(template)
    classifier = CLIPZeroShotClassifier(
        model=args.model,
        candidate_labels=labels,
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
    write_frame(frame, args.output)
