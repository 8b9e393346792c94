"""``sklearn-clip demo``: train a small CLIP offline, then zero-shot."""

import functools

from sklearn_clip._cli.options import DEMO, estimator_option


def register(commands):
    parser = commands.add_parser(
        "demo",
        help="train a small CLIP offline on generated shapes, then zero-shot",
        description="Train a small CLIP from random weights on generated (image, "
        "caption) pairs, then classify held-out images zero-shot from prompts.",
    )
    option = functools.partial(estimator_option, parser, DEMO)
    option("output_dir", "--output", dest="output")
    option("n_train", "--n-train", type=int, help="generated training pairs")
    option("max_epochs", "--epochs", type=int)
    option("random_state", "--random-state", "--seed", type=int)
    parser.set_defaults(run=run)


def run(args):
    from sklearn_clip.demo import run_demo

    run_demo(
        args.output,
        n_train=args.n_train,
        max_epochs=args.epochs,
        random_state=args.random_state,
        verbose=True,
    )
