"""
From zero-shot to few-shot
==========================

A zero-shot classifier learns nothing from labelled images, and a linear probe
on the embeddings forgets the prompts. ``CLIPFewShotClassifier`` starts from
the zero-shot classifier and moves away from it only as far as
cross-validation on the labelled images justifies, up to a tuned linear probe
when the images support that. Here the demo's small CLIP,
trained on generated shapes, is asked for the shape of 1,000 held-out images,
with 0 to 16 labelled images per class (one draw each; the full table over
seeds is in the few-shot page).
"""

# %%
# The model, the labelled pool and the held-out images
# ----------------------------------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegressionCV

from sklearn_clip import (
    CLIPEmbeddingTransformer,
    CLIPFewShotClassifier,
    CLIPZeroShotClassifier,
    load_model,
)
from sklearn_clip.datasets import COLORS, SHAPES, make_shapes
from sklearn_clip.demo import trained_model

model = load_model(trained_model(n_train=4000, max_epochs=20), dtype="float32")
pool = make_shapes(500, image_size=32, random_state=21)
test = make_shapes(1000, image_size=32, random_state=22)
pool_y, test_y = pool.shape.astype(str), test.shape.astype(str)
options = {
    "candidate_labels": list(SHAPES),
    "templates": ["a {}", *(f"a {color} {{}}" for color in COLORS)],
}
zero_shot = CLIPZeroShotClassifier(model, **options).fit()
embed = CLIPEmbeddingTransformer(model).fit(pool.images)
pool_emb, test_emb = embed.transform(pool.images), embed.transform(test.images)

# %%
# Accuracy against shots per class
# --------------------------------
rng = np.random.default_rng(0)
shots = [0, 1, 4, 16]
scores = {"probe": [], "linear": [], "tip": []}
for k in shots:
    chosen = np.concatenate(
        [rng.choice(np.flatnonzero(pool_y == s), k, replace=False) for s in SHAPES]
    ).astype(int)
    for method in ("linear", "tip"):
        clf = CLIPFewShotClassifier(model, method=method, random_state=0, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one shot: too few to cross-validate
            clf.fit(pool.images[chosen] if k else None, pool_y[chosen] if k else None)
        scores[method].append(clf.score(test.images, test_y))
    if k < 2:
        scores["probe"].append(np.nan)  # a probe needs images (and CV needs two)
    else:
        probe = LogisticRegressionCV(cv=min(k, 5), max_iter=2000)
        probe.fit(pool_emb[chosen], pool_y[chosen])
        scores["probe"].append(probe.score(test_emb, test_y))

figure, ax = plt.subplots(figsize=(6, 4))
ax.axhline(zero_shot.score(test.images, test_y), color="k", ls="--", label="zero-shot")
for name, values in scores.items():
    ax.plot(range(len(shots)), values, "o-", label=name)
ax.set_xticks(range(len(shots)), [str(k) for k in shots])
ax.set_xlabel("labelled images per class")
ax.set_ylabel("accuracy")
ax.legend()
figure.tight_layout()
plt.show()
