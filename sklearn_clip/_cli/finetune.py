"""``sklearn-clip finetune``: contrastive fine-tuning on a table of pairs.

The command runs unchanged under ``torchrun``: every process reads the same
table, the command joins the process group ``torchrun`` describes (and leaves
it at the end), and rank 0 alone prints and saves the model.
"""

import sys

from sklearn_clip._cli.common import CommandError, add_model_options, column, read_table
from sklearn_clip._options import DTYPE_NAMES, PAIR_ON_ERROR_OPTIONS

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
    add_model_options(parser)
    for action in parser._actions:  # the shared option means more here
        if action.dest == "batch_size":
            action.help = (
                "pairs per contrastive batch; under torchrun the global batch, "
                "shared evenly by the processes (default: %(default)s)"
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
    parser.add_argument(
        "--caption-template",
        help='turns each label into a caption, e.g. "a photo of a {}." (default: '
        "none; with --label-column and no template, the labels are the captions)",
    )


def _add_training_options(parser):
    """How the model trains: the fine-tuner's parameters."""
    parser.add_argument(
        "--epochs",
        type=int,
        default=5,
        help="passes over the pairs (default: %(default)s)",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=1e-5,
        help="peak AdamW learning rate (default: %(default)s)",
    )
    parser.add_argument(
        "--gradient-accumulation-steps",
        type=int,
        default=1,
        help="micro-batches averaged into one optimizer step (default: %(default)s)",
    )
    parser.add_argument(
        "--train-parts",
        choices=["all", "lock_image", "lock_text", "projections"],
        default="all",
        help="what trains: both towers, the text tower only (lock_image), the image "
        "tower only (lock_text) or the projections (default: %(default)s)",
    )
    parser.add_argument(
        "--lora",
        type=int,
        metavar="RANK",
        help="train LoRA adapters of this rank instead of the full weights; needs "
        "peft (default: none, full weights)",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="share of the pairs held out for validation; 0 for none "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--early-stopping",
        type=int,
        metavar="EPOCHS",
        help="stop after this many epochs without a better validation recall@1 and "
        "keep the best epoch (default: none, train every epoch)",
    )
    parser.add_argument(
        "--wise-alpha",
        type=float,
        default=1.0,
        help="WiSE-FT: mix (1 - alpha) * start + alpha * tuned weights "
        "(default: %(default)s)",
    )


def _add_run_options(parser):
    """Precision, checkpoints, unusable pairs and the seed."""
    parser.add_argument(
        "--dtype",
        choices=["auto", *DTYPE_NAMES],
        default="auto",
        help="training precision: float32, bfloat16 autocast, or auto (bfloat16 "
        "autocast on GPUs and, for models 768 wide or more, on CPUs with native "
        "bfloat16 units); the saved weights are always float32 master weights "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--checkpoint-dir",
        help="folder for a checkpoint after every epoch and on Ctrl-C (default: none)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue this run from its newest checkpoint in --checkpoint-dir if "
        "there is one, else start it (default: off)",
    )
    parser.add_argument(
        "--on-error",
        choices=PAIR_ON_ERROR_OPTIONS,
        default="raise",
        help="pairs whose image cannot be read or whose caption is missing: stop "
        "(raise) or leave them out (skip) (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the validation split, the batch order and LoRA's initialisation "
        "(default: %(default)s)",
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
        random_state=args.seed,
        progress=True,
    )


def run(args):
    from sklearn_clip._folders import check_save_path
    from sklearn_clip._backends.torch.weights import resolve_device
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
