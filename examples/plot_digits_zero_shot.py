"""
Handwritten digits: fine-tune on captions, then zero-shot and few-shot
======================================================================

CLIP learns from (image, caption) pairs, and then classifies images it has
never seen from prompts alone. This example shows both steps on real
handwritten digits: scikit-learn's :func:`~sklearn.datasets.load_digits`
(1,797 scans of 8 x 8 pixels, shipped with scikit-learn, nothing to
download).

A tiny random CLIP (:func:`sklearn_clip.toy.make_tiny_clip`) is fine-tuned by
:class:`~sklearn_clip.CLIPContrastiveFinetuner` on the digits of the first
half of the writers, each with the caption "a picture of the digit 3". Then
:class:`~sklearn_clip.CLIPZeroShotClassifier` reads the digits of the other
writers, with the ten prompts as its only description of the classes, and
:class:`~sklearn_clip.CLIPFewShotClassifier` improves on it with a few
labelled digits per class.
"""

# %%
# Real digits, upscaled
# ---------------------
# The 8 x 8 scans hold values 0-16; the model takes 16 x 16 greyscale images
# with values in [0, 1], which every estimator accepts as a numpy array.
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.pipeline import make_pipeline

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPEmbeddingTransformer,
    CLIPFewShotClassifier,
    CLIPZeroShotClassifier,
)
from sklearn_clip.toy import make_tiny_clip

digits = load_digits()
# (1797, 8, 8) -> (1797, 16, 16)
images = np.kron(digits.images / 16.0, np.ones((2, 2)))
labels = digits.target.astype(str)

# The scans are ordered by writer: the first 1,000 train,
# the other writers' 797 are held out.
train_images, test_images = images[:1000], images[1000:]
train_labels, test_labels = labels[:1000], labels[1000:]

fig, axes = plt.subplots(1, 10, figsize=(10, 1.8))
for digit, ax in enumerate(axes):
    ax.imshow(train_images[train_labels == str(digit)][0], cmap="gray_r")
    ax.set_title(f"digit {digit}", fontsize=9)
    ax.set_axis_off()
_ = fig.suptitle('Training images; captions read "a picture of the digit 3"')

# %%
# Fine-tuning from random weights
# -------------------------------
# ``caption_template`` turns each label into a caption, as in FLYP; the same
# template then serves as the zero-shot prompt. A model of 2 layers, 64 wide,
# reading 4 x 4 patches and captions of at most 16 tokens, trains on a CPU in
# about a minute.
PROMPT = "a picture of the digit {}"
start = make_tiny_clip(
    image_size=16,
    patch_size=4,
    hidden_size=64,
    num_heads=4,
    context_length=16,
    random_state=0,
)
tuner = CLIPContrastiveFinetuner(
    start,
    caption_template=PROMPT,
    learning_rate=3e-3,
    weight_decay=0.05,
    batch_size=100,
    max_epochs=12,
    validation_fraction=None,
    dtype="float32",
    random_state=0,
).fit(train_images, train_labels)
ax = tuner.plot_history()
_ = ax.set_title("Contrastive loss while fine-tuning")

# %%
# Zero-shot on other writers' digits
# ----------------------------------
# The classifier knows the ten classes only through their prompts.
classes = [str(d) for d in range(10)]


def zero_shot(model):
    """A zero-shot classifier of the ten digits, from their prompts."""
    return CLIPZeroShotClassifier(
        model, candidate_labels=classes, templates=PROMPT, dtype="float32"
    )


before = zero_shot(start).fit()
after = zero_shot(tuner.model_).fit()
print(f"chance:            {1 / len(classes):.3f}")
for name, clf in [("random weights:", before), ("after fine-tuning:", after)]:
    print(f"{name:18} {clf.score(test_images, test_labels):.3f}")

display = ConfusionMatrixDisplay.from_predictions(
    test_labels, after.predict(test_images), colorbar=False
)
display.ax_.set_title("Zero-shot digits, held-out writers")
display.ax_.set_xlabel("predicted from the prompts")
display.ax_.set_ylabel("true digit")
plt.tight_layout()

# %%
# A few labelled digits per class
# -------------------------------
# :class:`~sklearn_clip.CLIPFewShotClassifier` starts from the same prompts
# and learns from ``k`` labelled digits per class, drawn from the first 300
# held-out scans; it is scored on the other 497. With ``k=0`` it is the
# zero-shot classifier. For reference, a linear probe (logistic regression on
# the embeddings) learns from all 300 scans, without the prompts.
pool_images, pool_labels = test_images[:300], test_labels[:300]
eval_images, eval_labels = test_images[300:], test_labels[300:]
rng = np.random.default_rng(0)
shots = [0, 2, 10, 25]
accuracy = []
for k in shots:
    per_class = [np.flatnonzero(pool_labels == c) for c in classes]
    chosen = np.concatenate([rng.choice(rows, k, replace=False) for rows in per_class])
    few = CLIPFewShotClassifier(
        tuner.model_, candidate_labels=classes, templates=PROMPT, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two shots: too few to cross-validate
        if k:
            few.fit(pool_images[chosen], pool_labels[chosen])
        else:
            few.fit(None)
    accuracy.append(few.score(eval_images, eval_labels))
    print(f"{k:2d} shots per class: accuracy {accuracy[-1]:.3f}")

probe = make_pipeline(
    CLIPEmbeddingTransformer(tuner.model_), LogisticRegression(max_iter=2000)
)
probe_accuracy = probe.fit(pool_images, pool_labels).score(eval_images, eval_labels)
print(f"linear probe on all 300 scans: accuracy {probe_accuracy:.3f}")

fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(shots, accuracy, marker="o", label="few-shot, from the prompts")
ax.axhline(probe_accuracy, color="grey", linestyle="--", label="linear probe")
ax.axhline(1 / len(classes), color="black", linestyle=":", label="chance")
ax.set_xticks(shots)
ax.set_ylim(0, 1)
ax.set_xlabel("labelled digits per class")
ax.set_ylabel("accuracy, held-out writers")
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()

# %%
# Where the labels run out
# ------------------------
# Compare the curve with the probe: when a probe given every labelled scan
# does no better than the prompts, the model's embeddings, not the
# description of the classes, are what limits accuracy, and more labels will
# not help. A larger model (any hub id as ``model=``), more training pairs or
# more epochs move that limit; with a model whose embeddings separate the
# classes better than its prompts do, the few-shot curve climbs towards the
# probe.
