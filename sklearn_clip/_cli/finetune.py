"""``sklearn-clip finetune``: contrastive fine-tuning on a table of pairs."""

from sklearn_clip._cli.common import add_model_options, column, read_table


def register(commands):
    parser = commands.add_parser(
        "finetune",
        help="fine-tune on a table of image paths and captions",
        description="Fine-tune both encoders on (image, caption) pairs and save the "
        "model with save_pretrained.",
    )
    add_model_options(parser)
    parser.add_argument("--table", required=True, help=".csv or .parquet of pairs")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--text-column", default="caption")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True, help="folder for the model")
    parser.set_defaults(run=run)


def run(args):
    from sklearn_clip import CLIPContrastiveFinetuner

    table = read_table(args.table)
    images = column(table, args.image_column, "--image-column")
    texts = column(table, args.text_column, "--text-column")
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
