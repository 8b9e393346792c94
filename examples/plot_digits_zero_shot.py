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
from sklearn.metrics import ConfusionMatrixDisplay

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPFewShotClassifier,
    CLIPZeroShotClassifier,
)
from sklearn_clip.toy import make_tiny_clip

digits = load_digits()
images = np.kron(digits.images / 16.0, np.ones((2, 2)))  # (1797, 16, 16)
labels = digits.target.astype(str)

# The dataset is ordered by writer: the first 1,000 scans train, the other
# writers' 797 are held out.
train_images, test_images = images[:1000], images[1000:]
train_labels, test_labels = labels[:1000], labels[1000:]

fig, axes = plt.subplots(1, 10, figsize=(9, 1.3))
for digit, ax in enumerate(axes):
    ax.imshow(train_images[train_labels == str(digit)][0], cmap="gray_r")
    ax.set_title(f'"... digit {digit}"', fontsize=7)
    ax.set_axis_off()
fig.suptitle("Training pairs: an image and its caption", fontsize=9)

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
ax.set_title("Contrastive loss while fine-tuning")

# %%
# Zero-shot on other writers' digits
# ----------------------------------
# The classifier knows the ten classes only through their prompts.
classes = [str(d) for d in range(10)]
before = CLIPZeroShotClassifier(start, candidate_labels=classes, templates=PROMPT)
after = CLIPZeroShotClassifier(tuner.model_, candidate_labels=classes, templates=PROMPT)
print(f"chance:               {1 / len(classes):.3f}")
print(f"random weights:       {before.fit().score(test_images, test_labels):.3f}")
print(f"after fine-tuning:    {after.fit().score(test_images, test_labels):.3f}")

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
# zero-shot classifier.
pool_images, pool_labels = test_images[:300], test_labels[:300]
eval_images, eval_labels = test_images[300:], test_labels[300:]
rng = np.random.default_rng(0)
shots = [0, 1, 2, 5, 10]
accuracy = []
for k in shots:
    chosen = np.concatenate(
        [
            rng.choice(np.flatnonzero(pool_labels == c), k, replace=False)
            for c in classes
        ]
    ).astype(int)
    few = CLIPFewShotClassifier(
        tuner.model_, candidate_labels=classes, templates=PROMPT, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one shot: too few to cross-validate
        few.fit(pool_images[chosen] if k else None, pool_labels[chosen] if k else None)
    accuracy.append(few.score(eval_images, eval_labels))
    print(f"{k:2d} shots per class: accuracy {accuracy[-1]:.3f}")

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(shots, accuracy, marker="o")
ax.set_xticks(shots)
ax.set_xlabel("labelled digits per class")
ax.set_ylabel("accuracy on held-out writers")
ax.set_title("From zero-shot to few-shot")
fig.tight_layout()
plt.show()
