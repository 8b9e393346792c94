"""``sklearn-clip finetune``: contrastive fine-tuning on a table of pairs.

The command runs unchanged under ``torchrun``: every process reads the same
table, the command joins the process group ``torchrun`` describes (and leaves
it at the end), and rank 0 alone prints and saves the model.
"""

import functools
import sys

from sklearn_clip._cli.common import (
    CommandError,
    add_model_options,
    column,
    positive_int,
    read_table,
)
from sklearn_clip._cli.options import FINETUNER, estimator_option
from sklearn_clip._options import PAIR_ON_ERROR_OPTIONS

#: Exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED_STATUS = 130


def register(commands):
    parser = commands.add_parser(
        "finetune",
        help="fine-tune on a table of image paths and captions (or labels)",
        description="Fine-tune the encoders on (image, caption) pairs, or on "
        "(image, label) pairs with --label-column and --caption-template, and save "
        "the model with save_pretrained. Runs unchanged under torchrun, where "
        "--batch-size is the global batch over all processes.",
    )
    add_model_options(
        parser,
        FINETUNER,
        batch_note="Under torchrun, the global batch, shared evenly by the processes.",
        # The estimator's sentence is about the precision the tuned model
        # runs at; the command's user chooses how training runs.
        dtype_help="training precision: float32, bfloat16 autocast, or auto "
        "(bfloat16 autocast on GPUs and, for models 768 wide or more, on CPUs with "
        "native bfloat16 units); the saved weights are always float32 master "
        "weights",
    )
    _add_data_options(parser)
    _add_training_options(parser)
    _add_run_options(parser)
    parser.add_argument(
        "--output",
        required=True,
        help="folder for the model: new, empty, or one this command wrote before "
        "(it is replaced); checked before training",
    )
    parser.set_defaults(run=run)


def _add_data_options(parser):
    """Where the pairs are: the table and its columns."""
    parser.add_argument("--table", required=True, help=".csv or .parquet of pairs")
    parser.add_argument(
        "--image-column",
        default="image",
        help="column of image paths (default: %(default)s)",
    )
    text = parser.add_mutually_exclusive_group()
    text.add_argument(
        "--text-column",
        default="caption",
        help="column of captions (default: %(default)s)",
    )
    text.add_argument(
        "--label-column",
        help="column of class labels to train on instead of captions; each becomes "
        "a caption through --caption-template (default: none, captions are used)",
    )
    estimator_option(
        parser,
        FINETUNER,
        "caption_template",
        "--caption-template",
        # The command's labels come from --label-column, not from y.
        help='turns each label of --label-column into a caption, e.g. "a photo of '
        'a {}."; with --label-column and no template, the labels are the captions',
    )


def _add_training_options(parser):
    """How the model trains: the fine-tuner's parameters."""
    option = functools.partial(estimator_option, parser, FINETUNER)
    option("max_epochs", "--epochs", type=positive_int)
    option("learning_rate", "--learning-rate", type=float)
    option("gradient_accumulation_steps", "--gradient-accumulation-steps", type=int)
    option(
        "train_parts",
        "--train-parts",
        choices=["all", "lock_image", "lock_text", "projections"],
    )
    option("lora", "--lora", type=int, metavar="RANK", note="Needs peft.")
    option(
        "validation_fraction",
        "--validation-fraction",
        type=float,
        note="0 or unset holds out none, except 0.1 with --early-stopping.",
    )
    option(
        "n_iter_no_change",
        "--early-stopping",
        type=int,
        metavar="EPOCHS",
        note="None trains every epoch.",
    )
    option("wise_alpha", "--wise-alpha", type=float)


def _add_run_options(parser):
    """Checkpoints, unusable pairs and the seed."""
    option = functools.partial(estimator_option, parser, FINETUNER)
    option("checkpoint_dir", "--checkpoint-dir")
    option(
        "resume",
        "--resume",
        action="store_true",
        # The flag passes resume="auto", not the True the estimator describes.
        help="continue this run from its newest checkpoint in --checkpoint-dir if "
        "there is one, else start it",
    )
    option("on_error", "--on-error", choices=PAIR_ON_ERROR_OPTIONS)
    option(
        "random_state",
        "--random-state",
        "--seed",
        type=int,
        # Departs from the estimator's None, which draws a new seed each run:
        # the same command rerun with --resume must continue the same run.
        default=0,
        help="seeds the validation split, the batch order and LoRA's "
        "initialisation; 0 unlike the estimator's None (a fresh seed), so that "
        "the same command rerun with --resume continues the run",
    )


def _estimator(args):
    from sklearn_clip import CLIPContrastiveFinetuner

    if args.resume and args.checkpoint_dir is None:
        raise CommandError("--resume needs --checkpoint-dir")
    if args.label_column is None and args.caption_template is not None:
        raise CommandError("--caption-template needs --label-column")
    fraction = args.validation_fraction
    return CLIPContrastiveFinetuner(
        model=args.model,
        learning_rate=args.learning_rate,
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        train_parts=args.train_parts,
        lora=args.lora,
        wise_alpha=args.wise_alpha,
        caption_template=args.caption_template
        if args.caption_template is not None or args.label_column is None
        else "{}",
        validation_fraction=fraction if fraction else None,
        n_iter_no_change=args.early_stopping,
        checkpoint_dir=args.checkpoint_dir,
        resume="auto" if args.resume else False,
        on_error=args.on_error,
        device=args.device,
        dtype=args.dtype,
        random_state=args.random_state,
        progress=True,
    )


def run(args):
    from sklearn_clip._backends.torch.weights import resolve_device
    from sklearn_clip._folders import check_save_path
    from sklearn_clip._train import distributed as dist

    # Refused now, not after every epoch has run: the same check as
    # save_pretrained's, with the sources and inputs the command knows.
    check_save_path(
        args.output,
        sources=(args.model,),
        inputs=(args.table,),
        keep=(args.checkpoint_dir,),
    )

    # The command still needs the group after fit (rank 0 alone prints and
    # saves), so it joins the group itself and, having joined it, leaves it;
    # fit then finds the group joined and leaves it alone.
    with dist.process_group(resolve_device(args.device)):
        _fit_and_save(args, dist)


def _fit_and_save(args, dist):
    tuner = _estimator(args)
    tuner.fit(*_pairs(args))
    main = dist.is_main_process()
    if tuner.interrupted_:
        if main:
            _say_interrupted(tuner, args.output)
        raise SystemExit(INTERRUPTED_STATUS)
    if main:
        _print_report(tuner)
        tuner.save_pretrained(args.output)
        print(f"saved the fine-tuned model to {args.output}")


def _pairs(args):
    """``(images, captions or labels)`` from the table's columns."""
    table = read_table(args.table)
    images = column(table, args.image_column, "--image-column")
    if args.label_column is not None:
        return images, column(table, args.label_column, "--label-column")
    return images, column(table, args.text_column, "--text-column")


def _say_interrupted(tuner, output):
    # A partial model is not the result: say what can be resumed instead.
    saved = (
        f"the checkpoint {tuner.checkpoint_} holds it; rerun the same "
        "command with --resume to continue"
        if tuner.checkpoint_
        else "nothing was saved (give --checkpoint-dir to keep progress)"
    )
    print(
        f"sklearn-clip finetune: interrupted after {tuner.n_iter_} epoch(s); "
        f"no model was written to {output}; {saved}",
        file=sys.stderr,
    )


def _print_report(tuner):
    """One line per epoch, then the pairs that were left out."""
    for record in tuner.history_:
        print(
            "  ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in record.items()
            )
        )
    if tuner.input_errors_:
        print(f"left out {len(tuner.input_errors_)} unusable pair(s):")
        for error in tuner.input_errors_:
            print(
                f"  row {error['position']}: {error['source']}: "
                f"{error['error']}: {error['message']}"
            )
