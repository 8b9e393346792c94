"""
A linear probe against zero-shot
================================

Zero-shot classification needs no labelled images at all. A linear probe, a
logistic regression on the model's image embeddings, needs some, but learns
what the prompts may miss. How many labelled images does the probe need to
beat the prompts?

Both use the model of :func:`sklearn_clip.demo.trained_model`; the task is
the shape of held-out images (five classes). The probe is an ordinary
scikit-learn pipeline:
``make_pipeline(CLIPEmbeddingTransformer(model), LogisticRegression())``.
"""

# %%
# Zero-shot, from the prompts alone
# ---------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sklearn_clip import CLIPEmbeddingTransformer, CLIPZeroShotClassifier, load_model
from sklearn_clip.datasets import COLORS, SHAPES, make_shapes
from sklearn_clip.demo import trained_model

model = load_model(trained_model(n_train=4000, max_epochs=20), dtype="float32")
pool = make_shapes(1000, image_size=32, random_state=31)
test = make_shapes(600, image_size=32, random_state=32)

zero_shot = CLIPZeroShotClassifier(
    model,
    candidate_labels=list(SHAPES),
    templates=["a {}", "a picture of a {}"] + [f"a {c} {{}}" for c in COLORS],
).fit()
zero_shot_accuracy = zero_shot.score(test.images, test.shape)
print(f"zero-shot accuracy {zero_shot_accuracy:.3f}")

# %%
# The probe as a pipeline
# -----------------------
probe = make_pipeline(
    CLIPEmbeddingTransformer(model), LogisticRegression(C=10, max_iter=2000)
)
probe.fit(pool.images[:100], pool.shape[:100])
print(f"probe on 100 labelled images: {probe.score(test.images, test.shape):.3f}")

# %%
# Accuracy against the number of labelled images
# ----------------------------------------------
# The embeddings do not depend on which images the probe is trained on, so
# they are computed once and the logistic regression alone is refitted on
# subsets of k images per class (five draws each).
embed = CLIPEmbeddingTransformer(model).fit(pool.images)
pool_features, test_features = (
    embed.transform(pool.images),
    embed.transform(test.images),
)
rng = np.random.default_rng(0)
shots = [1, 2, 4, 8, 16, 32, 64]
scores = []
for k in shots:
    draws = []
    for _ in range(5):
        rows = np.concatenate(
            [
                rng.choice(np.flatnonzero(pool.shape == s), k, replace=False)
                for s in SHAPES
            ]
        )
        head = LogisticRegression(C=10, max_iter=2000)
        head.fit(pool_features[rows], pool.shape[rows])
        draws.append(head.score(test_features, test.shape))
    scores.append(draws)
scores = np.array(scores)

figure, ax = plt.subplots(figsize=(6.5, 4.3))
ax.errorbar(
    shots,
    scores.mean(1),
    yerr=scores.std(1),
    fmt="o-",
    capsize=3,
    label="linear probe (mean and sd of 5 draws)",
)
ax.axhline(
    zero_shot_accuracy,
    color="tab:red",
    linestyle="--",
    label="zero-shot, no labelled images",
)
ax.axhline(1 / len(SHAPES), color="grey", linestyle=":", label="chance")
ax.set_xscale("log", base=2)
ax.set_xticks(shots, [str(k) for k in shots])
ax.set_xlabel("labelled images per class")
ax.set_ylabel("shape accuracy, held-out images")
ax.set_ylim(0, 1.02)
ax.set_title("How many labels a probe needs to match the prompts")
ax.legend(loc="upper left")
figure.tight_layout()
plt.show()
