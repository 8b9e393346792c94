"""
Calibrating a zero-shot classifier
==================================

Zero-shot probabilities are the softmax of the logits at the temperature the
model learned while pretraining; on other images they are rarely calibrated.
Here the demo's small CLIP, trained on generated shapes, is asked for the
shape of held-out images. Freezing the fitted classifier and fitting one
temperature on 1,000 labelled images
(``CalibratedClassifierCV(FrozenEstimator(clf), method="temperature")``)
makes its confidence match its accuracy, without changing a single
prediction. MAPIE then gives prediction sets with a chosen coverage.
"""

# %%
# The model and the task
# ----------------------
# The first run trains the demo model (a minute or two on a laptop) and
# caches it on disk; later runs load it.
import sys

import matplotlib.pyplot as plt
import numpy as np
from mapie.classification import SplitConformalClassifier
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from sklearn_clip import CLIPZeroShotClassifier, load_model
from sklearn_clip.datasets import COLORS, SHAPES, make_shapes
from sklearn_clip.demo import trained_model

model = load_model(trained_model(n_train=4000, max_epochs=20), dtype="float32")
calibration = make_shapes(1000, image_size=32, random_state=11)
test = make_shapes(1000, image_size=32, random_state=12)
clf = CLIPZeroShotClassifier(
    model,
    candidate_labels=list(SHAPES),
    templates=["a {}", *(f"a {color} {{}}" for color in COLORS)],
).fit()
print(f"zero-shot accuracy: {clf.score(test.images, test.shape.astype(str)):.3f}")

# %%
# One temperature, fitted on held-out images
# ------------------------------------------
calibrated = CalibratedClassifierCV(FrozenEstimator(clf), method="temperature")
calibrated.fit(calibration.images, calibration.shape.astype(str))


def reliability(proba, truth, n_bins=10):
    """Per confidence bin: mean confidence, accuracy, share of images; and ECE."""
    confidence = proba.max(axis=1)
    correct = clf.classes_[proba.argmax(axis=1)] == truth
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    used = np.unique(bins)
    conf = np.array([confidence[bins == b].mean() for b in used])
    acc = np.array([correct[bins == b].mean() for b in used])
    share = np.array([np.mean(bins == b) for b in used])
    return conf, acc, share, float(np.sum(share * np.abs(acc - conf)))


truth = test.shape.astype(str)
figure, ax = plt.subplots(figsize=(5.5, 5))
ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
for name, proba in [
    ("zero-shot", clf.predict_proba(test.images)),
    ("temperature-scaled", calibrated.predict_proba(test.images)),
]:
    conf, acc, share, ece = reliability(proba, truth)
    ax.plot(conf, acc, "o-", label=f"{name} (ECE {ece:.3f})")
ax.set_xlabel("confidence (top-label probability)")
ax.set_ylabel("accuracy")
ax.set_title("Shape of 1,000 held-out generated images")
ax.legend(loc="upper left")
figure.tight_layout()

# %%
# Prediction sets with 90% coverage
# ---------------------------------
conformal = SplitConformalClassifier(estimator=clf, prefit=True, confidence_level=0.9)
conformal.conformalize(calibration.images, calibration.shape.astype(str))
_, sets = conformal.predict_set(test.images)
covered = sets[np.arange(len(truth)), np.searchsorted(clf.classes_, truth), 0]
print(f"coverage {covered.mean():.3f}, mean set size {sets[..., 0].sum(1).mean():.2f}")

if len(sys.argv) > 1:  # a file to save the figure to
    figure.savefig(sys.argv[1], dpi=120)
plt.show()
