"""
A map of images and captions in the shared space
================================================

CLIP embeds images and texts into one space, where an image lies close to the
captions that describe it. This example embeds held-out images and one
caption per colour-shape pair with :class:`~sklearn_clip.CLIPEmbeddingTransformer`
and draws both on the same two principal axes.

CLIP keeps images and texts in two separate cones of the space (the "modality
gap"), so each modality is centred before the projection: the map then shows
how the two line up, not the gap between them.
"""

# %%
# Image and text embeddings
# -------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA

from sklearn_clip import CLIPEmbeddingTransformer, load_model
from sklearn_clip.datasets import COLORS, SHAPES, make_shapes
from sklearn_clip.demo import trained_model

model = load_model(trained_model(n_train=4000, max_epochs=20), dtype="float32")
data = make_shapes(400, image_size=32, random_state=7)
captions = [f"a {c} {s}" for c in COLORS for s in SHAPES]

images = CLIPEmbeddingTransformer(model, modality="image").fit_transform(data.images)
texts = CLIPEmbeddingTransformer(model, modality="text").fit_transform(captions)
print(images.shape, texts.shape)

# %%
# Each image's nearest caption
# ----------------------------
# The embeddings are unit length, so a dot product is a cosine similarity.
nearest = np.asarray(captions)[np.argmax(images @ texts.T, axis=1)]
truth = np.char.add(np.char.add("a ", data.color.astype(str)), " ")
truth = np.char.add(truth, data.shape.astype(str))
print(f"nearest caption is the right one for {np.mean(nearest == truth):.1%}")

# %%
# The map
# -------
points = PCA(n_components=2).fit_transform(
    np.vstack([images - images.mean(0), texts - texts.mean(0)])
)
image_points, text_points = points[: len(images)], points[len(images) :]
markers = dict(zip(SHAPES, "o s ^ X D".split()))

figure, ax = plt.subplots(figsize=(8, 7))
for name in SHAPES:
    keep = data.shape == name
    ax.scatter(
        *image_points[keep].T,
        c=[np.array(COLORS[c]) / 255 for c in data.color[keep]],
        marker=markers[name],
        s=18,
        alpha=0.5,
        label=f"image of a {name}",
    )
ax.scatter(*text_points.T, marker="*", c="k", s=90, label="caption")
# Captions whose stars nearly coincide get their labels stacked, not overlaid.
placed = []
for (x, y), text in zip(text_points, captions):
    crowd = sum(abs(x - px) < 0.15 and abs(y - py) < 0.04 for px, py in placed)
    placed.append((x, y))
    ax.annotate(
        text.removeprefix("a "),
        (x, y),
        fontsize=7,
        xytext=(3, 3 - 9 * crowd),
        textcoords="offset points",
    )
ax.set_title("Images and captions on the same principal axes (each centred)")
ax.legend(loc="best", fontsize=8)
figure.tight_layout()
plt.show()
