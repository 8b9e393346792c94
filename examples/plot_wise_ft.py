"""
The WiSE-FT trade-off
=====================

Fine-tuning on a narrow task often destroys what the model knew before.
WiSE-FT (Wortsman et al., 2022) mixes the weights before and after
fine-tuning: ``wise_alpha=0`` is the starting model, ``1`` the fine-tuned
one, and :class:`~sklearn_clip.CLIPContrastiveFinetuner` changes the mix with
``set_params(wise_alpha=...)`` without retraining.

The starting model is :func:`sklearn_clip.demo.trained_model`, which names
colours and shapes. It is fine-tuned on shape captions alone ("a photo of a
circle."), which teaches it to ignore colour; the curve shows, for each mix,
the zero-shot accuracy on held-out images for shape (the fine-tuning task)
and colour (what the model knew before).
"""

# %%
# Fine-tuning on shapes only
# --------------------------
import matplotlib.pyplot as plt
import numpy as np

from sklearn_clip import CLIPContrastiveFinetuner, CLIPZeroShotClassifier, load_model
from sklearn_clip.datasets import COLORS, SHAPES, make_shapes
from sklearn_clip.demo import trained_model

SHAPE_PROMPT = "a photo of a {}."
COLOUR_PROMPT = "a photo of a {} shape."

start = load_model(trained_model(n_train=4000, max_epochs=20), dtype="float32")
train = make_shapes(3000, image_size=32, random_state=21)
test = make_shapes(600, image_size=32, random_state=22)
tuner = CLIPContrastiveFinetuner(
    start,
    caption_template=SHAPE_PROMPT,
    learning_rate=1e-3,
    max_epochs=5,
    batch_size=64,
    validation_fraction=None,
    dtype="float32",
    random_state=0,
).fit(train.images, train.shape)


def accuracy(model, labels, prompt, truth):
    """Zero-shot accuracy among ``labels`` with one prompt."""
    classifier = CLIPZeroShotClassifier(
        model, candidate_labels=list(labels), templates=prompt
    ).fit()
    return classifier.score(test.images, truth)


# %%
# One mix per alpha, no retraining
# --------------------------------
alphas = np.linspace(0, 1, 11)
colour, shape = [], []
for alpha in alphas:
    mixed = tuner.set_params(wise_alpha=alpha).model_
    colour.append(accuracy(mixed, COLORS, COLOUR_PROMPT, test.color))
    shape.append(accuracy(mixed, SHAPES, SHAPE_PROMPT, test.shape))
    print(f"wise_alpha={alpha:.1f}  colour {colour[-1]:.3f}  shape {shape[-1]:.3f}")

# %%
# The trade-off
# -------------
figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.3))
left.plot(alphas, colour, "o-", label="colour (what it knew)")
left.plot(alphas, shape, "s-", label="shape (the fine-tuning task)")
left.axhline(1 / len(COLORS), color="tab:blue", linestyle=":", linewidth=1)
left.axhline(1 / len(SHAPES), color="tab:orange", linestyle=":", linewidth=1)
left.set_xlabel("wise_alpha (0: starting model, 1: fine-tuned)")
left.set_ylabel("zero-shot accuracy, held-out images")
left.set_ylim(0, 1.02)
left.legend(loc="lower left")
left.set_title("Accuracy against the mixing weight")

right.plot(colour, shape, "o-", color="tab:purple")
for alpha, x, y in zip(alphas, colour, shape):
    right.annotate(
        f"{alpha:.1f}", (x, y), fontsize=8, xytext=(4, 2), textcoords="offset points"
    )
right.set_xlabel("colour accuracy")
right.set_ylabel("shape accuracy")
right.set_title("The trade-off curve (labels: wise_alpha)")
figure.tight_layout()
plt.show()
