"""
Zero-shot confusion matrices
============================

A zero-shot classifier is defined by its label names and prompt templates
alone: ``fit`` only fixes the label space, nothing is learned from images. Its
confusion matrix shows which classes the prompts separate and which they mix
up.

The model is :func:`sklearn_clip.demo.trained_model`, a small CLIP trained
from random weights on generated (image, caption) pairs of coloured shapes; it
was never trained as a classifier. Swap it for ``"openai/clip-vit-base-patch32"``
and your own images and labels to do the same on a real model.
"""

# %%
# The model and held-out images
# -----------------------------
# The first call trains the model (about a minute on two CPU cores) and caches
# it on disk; later calls return the saved directory at once.
import matplotlib.pyplot as plt
from sklearn.metrics import ConfusionMatrixDisplay

from sklearn_clip import CLIPZeroShotClassifier, load_model
from sklearn_clip.datasets import COLORS, SHAPES, make_shapes
from sklearn_clip.demo import trained_model

model = load_model(trained_model(n_train=4000, max_epochs=20), dtype="float32")
test = make_shapes(600, image_size=32, random_state=101)

# %%
# One classifier per question
# ---------------------------
# Each class name is put into every template and the prompts' embeddings are
# averaged (ensembled) into one class embedding. Templates that name the other
# attribute ("a {} circle", "a {} square", ...) ask about colour whatever the
# shape is.
colour = CLIPZeroShotClassifier(
    model,
    candidate_labels=list(COLORS),
    templates=["something {}"] + [f"a {{}} {shape}" for shape in SHAPES],
).fit()
shape = CLIPZeroShotClassifier(
    model,
    candidate_labels=list(SHAPES),
    templates=["a {}", "a picture of a {}"] + [f"a {c} {{}}" for c in COLORS],
).fit()
print(f"colour accuracy {colour.score(test.images, test.color):.3f} (chance 0.167)")
print(f"shape accuracy  {shape.score(test.images, test.shape):.3f} (chance 0.200)")

# %%
# The confusion matrices
# ----------------------
# Rows are the true classes, columns the predicted ones; each row is
# normalised to sum to one.
figure, axes = plt.subplots(1, 2, figsize=(11, 4.8))
for ax, classifier, truth, title in [
    (axes[0], colour, test.color, "colour"),
    (axes[1], shape, test.shape, "shape"),
]:
    ConfusionMatrixDisplay.from_estimator(
        classifier,
        test.images,
        truth,
        labels=classifier.classes_,
        normalize="true",
        values_format=".2f",
        colorbar=False,
        ax=ax,
    )
    ax.set_title(f"Zero-shot {title}, held-out images")
    ax.tick_params(axis="x", labelrotation=45)
figure.tight_layout()
plt.show()
