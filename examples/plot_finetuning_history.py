"""
A fine-tuning history
=====================

:class:`~sklearn_clip.CLIPContrastiveFinetuner` records, after each epoch, the
training loss, the validation loss and the validation image-to-text recall@1
in ``history_``; :meth:`~sklearn_clip.CLIPContrastiveFinetuner.plot_history`
draws them.

Here the model of :func:`sklearn_clip.demo.trained_model`, which names
colours reliably but shapes only about half the time, is fine-tuned on shape
labels. The labels become captions through ``caption_template`` (as in FLYP),
so validation recall@1 over the five distinct captions is the zero-shot
accuracy with that prompt, and the zero-shot classifier built on the tuned
model uses the same prompt.
"""

# %%
# Shape labels as captions
# ------------------------
import matplotlib.pyplot as plt

from sklearn_clip import CLIPContrastiveFinetuner, CLIPZeroShotClassifier, load_model
from sklearn_clip.datasets import SHAPES, make_shapes
from sklearn_clip.demo import trained_model

PROMPT = "a photo of a {}."

model = load_model(trained_model(n_train=4000, max_epochs=20), dtype="float32")
train = make_shapes(2000, image_size=32, random_state=11)
test = make_shapes(500, image_size=32, random_state=12)


def shape_accuracy(model):
    """Zero-shot accuracy of naming the shape, from the prompt alone."""
    classifier = CLIPZeroShotClassifier(
        model, candidate_labels=list(SHAPES), templates=PROMPT
    ).fit()
    return classifier.score(test.images, test.shape)


before = shape_accuracy(model)

# %%
# Fine-tuning with a validation split
# -----------------------------------
# A tenth of the pairs is held out to measure the validation loss and
# recall@1 after every epoch.
tuner = CLIPContrastiveFinetuner(
    model,
    caption_template=PROMPT,
    learning_rate=1e-3,
    max_epochs=8,
    batch_size=64,
    validation_fraction=0.1,
    dtype="float32",
    random_state=0,
).fit(train.images, train.shape)
after = shape_accuracy(tuner.model_)
print(f"zero-shot shape accuracy: {before:.3f} before, {after:.3f} after")

# %%
# The history
# -----------
ax = tuner.plot_history()
ax.set_title(f"Fine-tuning on shapes: zero-shot accuracy {before:.2f} -> {after:.2f}")
ax.figure.tight_layout()
plt.show()
