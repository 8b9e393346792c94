"""``sklearn-clip zero-shot``: predictions and probabilities from label names."""

from pathlib import Path

from sklearn_clip._cli.common import (
    AppendOverDefault,
    CommandError,
    add_input_options,
    add_model_options,
    add_output_options,
    add_video_options,
    check_output,
    frame_table,
    read_rows,
    video_option,
    write_frame,
)
from sklearn_clip._cli.options import ZERO_SHOT, estimator_option

OUTPUT_SUFFIXES = (".csv", ".parquet")


def register(commands):
    parser = commands.add_parser(
        "zero-shot",
        help="classify images from label names and prompt templates",
        description="Zero-shot classification: a CSV of predictions and probabilities.",
    )
    add_model_options(parser, ZERO_SHOT)
    add_input_options(parser, ZERO_SHOT)
    add_video_options(parser)
    parser.add_argument(
        "--per-frame",
        action="store_true",
        help="write a label track: one row per sampled video frame (input, "
        "frame, time, prediction, probabilities) instead of one per video",
    )
    parser.add_argument("--labels", help="comma-separated label names")
    parser.add_argument("--labels-file", help="a text file with one label per line")
    estimator_option(
        parser,
        ZERO_SHOT,
        "templates",
        "--template",
        action=AppendOverDefault,
        note="Give a prompt with {} for the label, or the name of a set; repeat "
        "to ensemble.",
    )
    add_output_options(parser, " or ".join(OUTPUT_SUFFIXES))
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
    templates = args.template  # the default: the estimator's named set
    if not isinstance(templates, str):
        templates = templates[0] if len(templates) == 1 else tuple(templates)
    classifier = CLIPZeroShotClassifier(
        model=args.model,
        candidate_labels=labels,
        templates=templates,
        batch_size=args.batch_size,
        device=args.device,
        on_error=args.on_error,
        dtype=args.dtype,
        cache_dir=args.cache_dir,
        progress=True,
        video=video_option(args),
    ).fit(None)
    if args.per_frame:
        track = classifier.predict_frames(rows)
        track = track.rename(columns={"label": "prediction"})
        columns = ["prediction", *track.columns[4:]]
        return write_frame(
            pd.concat([frame_table(track, rows), track[columns]], axis=1), args.output
        )
    probabilities = classifier.predict_proba(rows)
    frame = pd.DataFrame(
        probabilities, columns=[f"proba_{label}" for label in classifier.classes_]
    )
    frame.insert(0, "prediction", classifier.classes_[probabilities.argmax(axis=1)])
    frame.insert(0, "input", rows)
    write_frame(frame, args.output)
