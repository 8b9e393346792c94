"""``sklearn-clip demo``: train a small CLIP offline, then zero-shot."""


def register(commands):
    parser = commands.add_parser(
        "demo",
        help="train a small CLIP offline on generated shapes, then zero-shot",
        description="Train a small CLIP from random weights on generated (image, "
        "caption) pairs, then classify held-out images zero-shot from prompts.",
    )
    parser.add_argument(
        "--output",
        default="sklearn-clip-demo",
        help="folder for plots, results and the model (%(default)s)",
    )
    parser.add_argument(
        "--n-train",
        type=int,
        default=8000,
        help="generated training pairs (%(default)s)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs (default: the demo's tuned value)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args):
    from sklearn_clip.demo import run_demo

    run_demo(
        args.output,
        n_train=args.n_train,
        max_epochs=args.epochs,
        random_state=args.seed,
        verbose=True,
    )
