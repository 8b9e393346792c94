"""
Search a collection by text, and find its near-duplicates
=========================================================

:class:`~sklearn_clip.CLIPNearestNeighbors` embeds a collection of images
once; text queries then return the nearest images, best first, and
:meth:`~sklearn_clip.CLIPNearestNeighbors.find_duplicates` groups the images
that are near-copies of each other.

The model is the small CLIP that the demo trains on generated shapes
(:func:`sklearn_clip.demo.trained_model`, 4,000 pairs and 20 epochs, trained
the first time and then cached): it knows colours and shapes, nothing else.
"""

# %%
# A collection with near-copies in it
# -----------------------------------
# 150 generated images, plus five of them again: once re-encoded as a
# low-quality JPEG and once resized down and back up. Those ten rows are the
# near-duplicates to find.
import io

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from sklearn_clip import CLIPNearestNeighbors, load_model
from sklearn_clip.datasets import make_shapes
from sklearn_clip.demo import trained_model


def jpeg(image, quality=30):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def resized(image):
    small = Image.fromarray(image).resize((20, 20), Image.Resampling.BILINEAR)
    return np.asarray(small.resize(image.shape[:2][::-1], Image.Resampling.BILINEAR))


shapes = make_shapes(150, image_size=32, random_state=1)
originals = [3, 17, 42, 88, 120]
images = [*shapes.images]
images += [jpeg(shapes.images[i]) for i in originals]
images += [resized(shapes.images[i]) for i in originals]

model = load_model(trained_model(n_train=4000, max_epochs=20), dtype="float32")
search = CLIPNearestNeighbors(model, n_neighbors=6).fit(images)
print(f"{search.n_samples_fit_} images, {search.embedding_dim_}-d embeddings")

# %%
# Text queries
# ------------
# Each row of the sheet is a query and its six nearest images, with their
# cosine similarity.
queries = ["a red circle", "a blue square", "something green", "a yellow triangle"]
distances, indices = search.kneighbors(queries, query_modality="text")

fig, axes = plt.subplots(len(queries), 6, figsize=(9, 1.8 * len(queries)))
for row, query in enumerate(queries):
    for column, (distance, hit) in enumerate(zip(distances[row], indices[row])):
        ax = axes[row, column]
        ax.imshow(images[hit])
        ax.set_title(f"{1 - distance:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[row, 0].set_ylabel(query, rotation=0, ha="right", va="center", fontsize=10)
fig.suptitle("Text-to-image search: six nearest images per query")
fig.tight_layout()

# %%
# Choosing the duplicate threshold
# --------------------------------
# How similar near-copies are depends on the model, so the threshold is best
# read off copies you make yourself: here the similarity of each re-encoded or
# resized copy to its original, against the similarity of every pair of
# distinct generated images. A threshold works only if it sits above nearly
# all distinct pairs and below the copies.
embeddings = search.embeddings_
n = len(shapes.images)
copies = np.arange(n, len(images))
copy_sims = np.sum(embeddings[copies] * embeddings[np.tile(originals, 2)], axis=1)
pairs = embeddings[:n] @ embeddings[:n].T
distinct_sims = pairs[np.triu_indices(n, k=1)]
print(f"copies: similarity {copy_sims.min():.3f} to {copy_sims.max():.3f}")
print(f"distinct images: highest {distinct_sims.max():.3f}")

# A threshold just above every distinct pair groups no distinct images; how
# many of the copies does it still catch?
threshold = round(float(distinct_sims.max()) + 0.001, 3)
groups = search.find_duplicates(threshold=threshold)
caught = sum(len(group) - 1 for group in groups)
print(f"threshold {threshold}: {len(groups)} groups, {caught} of 10 copies caught")

# %%
# This small model knows only colours and shapes: two different red circles
# look alike to it, often more alike than a resized copy does to its
# original, so the two distributions overlap and no threshold separates them.
# That is what this check is for; run it with your model on your images
# before trusting a threshold.
fig, ax = plt.subplots(figsize=(7, 3))
ax.hist(distinct_sims, bins=100, density=True, label="distinct images")
ax.hist(
    copy_sims, bins=10, density=True, alpha=0.7, label="re-encoded / resized copies"
)
ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold}")
ax.set_xlabel("cosine similarity")
ax.set_yticks([])
ax.legend(loc="upper left")
fig.tight_layout()
plt.show()
