"""`sklearn-clip evaluate`: models compared on labelled or captioned images."""

import sys
from pathlib import Path

from sklearn_clip._cli.common import (
    AppendOverDefault,
    CommandError,
    add_output_options,
    check_output,
    positive_int,
    write_frame,
)
from sklearn_clip._cli.options import estimator_option

EVALUATE = "sklearn_clip.evaluate:evaluate"
OUTPUT_SUFFIXES = (".csv", ".parquet")
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def _ints(text):
    """An ``argparse`` type: comma-separated whole numbers, as a tuple."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 0:
        raise ValueError(f"expected comma-separated whole numbers; got {text!r}")
    return values


def register(commands):
    parser = commands.add_parser(
        "evaluate",
        help="compare models: zero-shot, few-shot and retrieval on your data",
        description="Evaluate models on a folder of class folders or a table of "
        "images with labels and/or captions: a results table and a plot.",
    )
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        help="hub id, model folder or export; repeat to compare several",
    )
    parser.add_argument(
        "--data",
        dest="dataset",  # "data" is evaluate()'s parameter, which takes more
        required=True,
        help="a folder with one sub-folder of images per class, or a .csv or "
        ".parquet table with an image column and a label and/or caption column",
    )
    estimator_option(
        parser,
        EVALUATE,
        "prompts",
        "--prompts",
        action=AppendOverDefault,
        help="a prompt set: a set name (simple, openai_imagenet, ...) or "
        "templates with {} for the label, separated by '|'; repeat to compare",
    )
    _settings(parser)
    add_output_options(
        parser, "the results table: .csv or .parquet", replaced="--output and --plot"
    )
    parser.add_argument("--plot", help="the plot: .png, .svg or .pdf")
    parser.set_defaults(run=run)


def _settings(parser):
    """The options that stand for parameters of ``evaluate``."""
    estimator_option(parser, EVALUATE, "shots", "--shots", type=_ints,
                     note="Comma-separated, e.g. 1,2,4,8; 0 for no curve.")  # fmt: skip
    estimator_option(parser, EVALUATE, "seeds", "--seeds", type=_ints,
                     note="Comma-separated.")  # fmt: skip
    estimator_option(parser, EVALUATE, "k", "--k", type=_ints, note="Comma-separated.")
    estimator_option(parser, EVALUATE, "ties", "--ties",
                     choices=("pessimistic", "optimistic", "index"))  # fmt: skip
    estimator_option(parser, EVALUATE, "cache_dir", "--cache-dir")
    estimator_option(parser, EVALUATE, "device", "--device")
    estimator_option(parser, EVALUATE, "dtype", "--dtype",
                     choices=("auto", "float32", "bfloat16", "float16"))  # fmt: skip
    estimator_option(parser, EVALUATE, "batch_size", "--batch-size", type=positive_int)
    for name in ("image_column", "label_column", "caption_column"):
        flag = "--" + name.replace("_", "-")
        estimator_option(parser, EVALUATE, name, flag)


def _prompt_sets(given):
    if isinstance(given, str):  # the default: evaluate()'s own
        given = [given]
    sets = {}
    for i, value in enumerate(given):
        templates = [t.strip() for t in value.split("|") if t.strip()]
        if not templates:
            raise CommandError(f"--prompts {value!r} holds no template")
        name = value if len(templates) == 1 and "{" not in value else f"prompts {i + 1}"
        sets[name] = templates[0] if len(templates) == 1 else templates
    return sets


def run(args):
    outputs = [(args.output, OUTPUT_SUFFIXES, "--output")]
    if args.plot is not None:
        outputs.append((args.plot, PLOT_SUFFIXES, "--plot"))
    for path, suffixes, option in outputs:
        check_output(path, suffixes, overwrite=args.overwrite, inputs=(args.dataset,),
                     option=option)  # fmt: skip
    if not Path(args.dataset).exists():
        raise CommandError(f"--data {args.dataset!r} does not exist")
    from sklearn_clip._files import write_output
    from sklearn_clip.evaluate import evaluate

    report = evaluate(
        args.model, args.dataset, prompts=_prompt_sets(args.prompts),
        shots=tuple(s for s in args.shots if s > 0), seeds=args.seeds, k=args.k,
        ties=args.ties, cache_dir=args.cache_dir, device=args.device,
        dtype=args.dtype, batch_size=args.batch_size, progress=True,
        image_column=args.image_column, label_column=args.label_column,
        caption_column=args.caption_column,
    )  # fmt: skip
    for problem in report.problems:
        print(f"sklearn-clip evaluate: problem: {problem}", file=sys.stderr)
    if report.results.empty:
        print("sklearn-clip evaluate: no model gave results", file=sys.stderr)
        return 1
    write_frame(report.results, args.output)
    if args.plot is not None:
        figure = report.plot()
        form = Path(args.plot).suffix.lower()[1:]
        write_output(
            Path(args.plot), lambda temporary: figure.savefig(temporary, format=form)
        )
        print(f"wrote the plot to {args.plot}")
    print(report.summary().round(3).to_string())
    return 0
