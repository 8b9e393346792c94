"""The WiSE-FT experiment on generated shapes, shared by its benchmark and test.

A tiny CLIP is first trained from random weights on captions naming colour and
shape ("a photo of a red circle."), then fine-tuned on colour captions, then
on shape captions, which teaches it to ignore colour. :func:`run` measures
zero-shot colour and shape accuracy on held-out images for each
``wise_alpha``. ``benchmarks/wise_ft.py`` prints and plots it; the slow tests
check its trade-off.
"""

import numpy as np

from sklearn_clip._classify.zero_shot import CLIPZeroShotClassifier
from sklearn_clip._train.finetuner import CLIPContrastiveFinetuner
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
COMMON = {"weight_decay": 0.05, "batch_size": 64, "validation_fraction": None}
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
