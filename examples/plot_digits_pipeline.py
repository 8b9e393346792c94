"""
Handwritten digits in a pipeline: image embeddings beside table columns
=======================================================================

Data scientists rarely have images alone: a table holds an image column next
to numbers and text. :class:`~sklearn_clip.CLIPEmbeddingTransformer` turns the
image column into features inside a :class:`~sklearn.compose.ColumnTransformer`,
so the whole table goes through one scikit-learn pipeline and
:func:`~sklearn.model_selection.cross_val_score` evaluates it.

The images are real: scikit-learn's :func:`~sklearn.datasets.load_digits`
(1,797 handwritten digits, shipped with scikit-learn). No pretrained weights
can be downloaded while these docs build, so the model here is a tiny CLIP
with random weights (:func:`sklearn_clip.toy.make_tiny_clip`): even its
embeddings separate the digits far better than the two table columns do. With
a real checkpoint, pass its hub id (``"openai/clip-vit-base-patch32"``)
instead; nothing else changes.
"""

# %%
# A table with an image column
# ----------------------------
# Each row holds the digit's 16 x 16 image (upscaled from 8 x 8, values in
# [0, 1]) and two numbers measured on it: how much ink, and how many rows it
# spans.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_clip import CLIPEmbeddingTransformer, load_model
from sklearn_clip.toy import make_tiny_clip

digits = load_digits()
images = np.kron(digits.images / 16.0, np.ones((2, 2)))
table = pd.DataFrame(
    {
        "image": list(images),
        "ink": images.sum(axis=(1, 2)),
        "height": (images.sum(axis=2) > 0).sum(axis=1),
    }
)
target = digits.target
table.head()

# %%
# Three pipelines, one table
# --------------------------
# The model is loaded once; every clone in the cross-validation shares it.
model = load_model(
    make_tiny_clip(
        image_size=16, patch_size=4, hidden_size=64, num_heads=4, random_state=0
    ),
    dtype="float32",
)


def pipeline(columns):
    """Scale the selected features, then a logistic regression."""
    return make_pipeline(
        ColumnTransformer(columns), StandardScaler(), LogisticRegression(max_iter=2000)
    )


numbers = [("numbers", "passthrough", ["ink", "height"])]
embeddings = [("image", CLIPEmbeddingTransformer(model), ["image"])]
pipelines = {
    "ink and height": pipeline(numbers),
    "image embeddings": pipeline(embeddings),
    "both": pipeline(embeddings + numbers),
}
scores = {
    name: cross_val_score(estimator, table, target, cv=3)
    for name, estimator in pipelines.items()
}
for name, score in scores.items():
    print(f"{name:>16}: accuracy {score.mean():.3f} (+/- {score.std():.3f})")

# %%
# The image column carries the information
# ----------------------------------------
# Ten classes: chance is 0.1. The two numbers barely beat it; the embeddings of
# an untrained model already read most digits, and a pretrained or fine-tuned
# model (see the previous example) reads them better still.
fig, ax = plt.subplots(figsize=(6, 2.6))
names = list(scores)
means = [scores[name].mean() for name in names]
ax.barh(names, means, xerr=[scores[name].std() for name in names], color="tab:blue")
ax.axvline(0.1, color="grey", linestyle=":", label="chance")
for y, mean in enumerate(means):
    ax.text(mean + 0.02, y, f"{mean:.2f}", va="center")
ax.set_xlim(0, 1.1)
ax.set_xlabel("3-fold cross-validated accuracy")
ax.legend(loc="lower right")
ax.set_title("Digits: a table with an image column")
fig.tight_layout()
plt.show()
