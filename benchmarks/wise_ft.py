"""WiSE-FT on generated shapes: what fine-tuning forgets, and what mixing keeps.

A tiny CLIP is first trained from random weights on captions naming colour and
shape ("a photo of a red circle.": our stand-in for pretraining). It is then
fine-tuned on colour captions ("a photo of a red shape."), and that model is
fine-tuned again on shape captions ("a photo of a circle."), which teaches it
to ignore colour. ``CLIPContrastiveFinetuner(wise_alpha=...)`` mixes the
weights before (alpha 0) and after (alpha 1) the shape fine-tuning; for each
alpha, zero-shot colour and shape accuracy on held-out images are measured
from the prompts alone. Everything runs on CPU in about a minute.

Usage: ``python benchmarks/wise_ft.py [--plot docs/images/wise_ft.png]
[--json rows.json]``. The slow tests run it and check its trade-off.
"""

import argparse
import json
import time
import warnings

import numpy as np

from sklearn_clip import CLIPContrastiveFinetuner, CLIPZeroShotClassifier
from sklearn_clip.datasets import COLORS, SHAPES, make_shapes
from sklearn_clip.toy import make_tiny_clip

MODEL = {
    "image_size": 32,
    "patch_size": 8,
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 4,
    "context_length": 16,
}
# float32 on every CPU, so the figures (and the slow test that checks them)
# are the same whatever bfloat16 units the machine has.
COMMON = {
    "weight_decay": 0.05,
    "batch_size": 64,
    "validation_fraction": None,
    "dtype": "float32",
}
PRETRAINING = {**COMMON, "learning_rate": 2e-3, "max_epochs": 10}
# Fine-tuning steps are gentler than pretraining, as with a real CLIP.
FINE_TUNING = {**COMMON, "learning_rate": 1e-3, "max_epochs": 5}
PRETRAINING_PROMPT = "a photo of a {}."
COLOUR_PROMPT = "a photo of a {} shape."
SHAPE_PROMPT = "a photo of a {}."
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def large_shapes(n_samples, random_state):
    """About ``n_samples`` images of large shapes, with colour and shape labels.

    At 32 pixels a small shape is 6 to 8 pixels across: too few for a tiny
    model with 8-pixel patches to tell a circle from a diamond reliably, so
    only large shapes are kept.
    """
    data = make_shapes(2 * n_samples, image_size=32, random_state=random_state)
    keep = data.size == "large"
    return data.images[keep], data.color[keep], data.shape[keep]


def zero_shot_accuracy(model, images, truth, labels, prompt):
    """Accuracy of classifying ``images`` among ``labels`` with one prompt."""
    classifier = CLIPZeroShotClassifier(
        model, candidate_labels=list(labels), templates=prompt
    ).fit(None)
    return classifier.score(images, truth)


def pretrain(n_train=3000, random_state=0):
    """A tiny CLIP trained from random weights on colour-and-shape captions."""
    init = make_tiny_clip(**MODEL, random_state=random_state)
    images, colour, shape = large_shapes(n_train, random_state)
    labels = np.char.add(np.char.add(colour.astype(str), " "), shape.astype(str))
    tuner = CLIPContrastiveFinetuner(
        init,
        caption_template=PRETRAINING_PROMPT,
        random_state=random_state,
        **PRETRAINING,
    )
    return tuner.fit(images, labels).model_


def run(*, pretrained=None, n_train=3000, n_test=600, alphas=ALPHAS, random_state=0):
    """Fine-tune on colours, then on shapes; one row per alpha (list of dicts).

    A first row, ``alpha=None``, gives the pretrained model's accuracies.
    """
    if pretrained is None:
        pretrained = pretrain(n_train, random_state)
    images, colour, _ = large_shapes(n_train, random_state + 1)
    colour_tuner = CLIPContrastiveFinetuner(
        pretrained,
        caption_template=COLOUR_PROMPT,
        random_state=random_state,
        **FINE_TUNING,
    ).fit(images, colour)
    images, _, shape = large_shapes(n_train, random_state + 2)
    shape_tuner = CLIPContrastiveFinetuner(
        colour_tuner.model_,
        caption_template=SHAPE_PROMPT,
        random_state=random_state,
        **FINE_TUNING,
    ).fit(images, shape)

    test_images, test_colour, test_shape = large_shapes(n_test, random_state + 3)

    def accuracies(alpha, model):
        return {
            "alpha": alpha,
            "colour": zero_shot_accuracy(
                model, test_images, test_colour, COLORS, COLOUR_PROMPT
            ),
            "shape": zero_shot_accuracy(
                model, test_images, test_shape, SHAPES, SHAPE_PROMPT
            ),
        }

    rows = [accuracies(None, pretrained)]
    for alpha in alphas:
        # Only the mixing weight changes: no retraining.
        rows.append(accuracies(alpha, shape_tuner.set_params(wise_alpha=alpha).model_))
    return rows


def plot(rows, path):
    """Colour and shape accuracy against alpha, with chance levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in rows if row["alpha"] is not None]
    alphas = [row["alpha"] for row in rows]
    figure, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(alphas, [r["colour"] for r in rows], "o-", label="colour (6 classes)")
    ax.plot(alphas, [r["shape"] for r in rows], "s-", label="shape (5 classes)")
    ax.axhline(1 / len(COLORS), color="tab:blue", linestyle=":", linewidth=1)
    ax.axhline(1 / len(SHAPES), color="tab:orange", linestyle=":", linewidth=1)
    ax.set_xlabel("wise_alpha (0: colour-tuned model, 1: then shape-tuned)")
    ax.set_ylabel("zero-shot accuracy, held-out images")
    ax.set_ylim(0, 1.02)
    ax.set_title("WiSE-FT: mixing weights keeps both skills")
    ax.legend(loc="center left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--plot", default=None, help="write the plot to this PNG")
    parser.add_argument("--json", default=None, help="write the rows to this file")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    rows = run(random_state=args.random_state)
    print("| model | colour accuracy | shape accuracy |")
    print("|---|---:|---:|")
    for row in rows:
        name = "pretrained" if row["alpha"] is None else f"wise_alpha={row['alpha']}"
        print(f"| {name} | {row['colour']:.3f} | {row['shape']:.3f} |")
    print(
        f"\nchance: colour {1 / len(COLORS):.3f}, shape {1 / len(SHAPES):.3f}; "
        f"{time.perf_counter() - start:.0f} s in all"
    )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file)
    if args.plot:
        plot(rows, args.plot)
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
