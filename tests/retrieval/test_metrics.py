"""Retrieval recall@k against a loop written from its definition; the scorers."""

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score

from sklearn_clip import CLIPContrastiveFinetuner
from sklearn_clip.datasets import make_shapes
from sklearn_clip.metrics import make_recall_scorer, recall_at_k
from sklearn_clip.toy import make_tiny_clip


def unit_rows(n, d=8, seed=0):
    rows = np.random.default_rng(seed).standard_normal((n, d))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def reference(images, texts, ids, k, direction):
    """Recall@k, one query at a time, straight from the definition."""
    hits = []
    if direction == "image_to_text":
        for i, image in enumerate(images):
            best = np.argsort(-(texts @ image), kind="stable")[:k]
            hits.append(ids[i] in best)
    else:
        for caption in np.unique(ids):
            best = np.argsort(-(images @ texts[caption]), kind="stable")[:k]
            hits.append(caption in ids[best])
    return np.mean(hits)


@pytest.mark.parametrize("direction", ["image_to_text", "text_to_image"])
@pytest.mark.parametrize("k", [1, 3, 10, 100])
def test_recall_at_k_is_the_definition(direction, k):
    images, texts = unit_rows(60), unit_rows(25, seed=1)
    ids = np.random.default_rng(2).integers(0, 25, 60)  # shared captions too
    # Images near their captions, so recall is neither 0 nor 1.
    images = images + 0.5 * texts[ids]
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    expected = reference(images, texts, ids, k, direction)
    assert recall_at_k(images, texts, ids, k=k, direction=direction) == expected
    if k == 3:
        assert 0 < expected < 1


def test_recall_errors():
    with pytest.raises(ValueError, match="direction"):
        recall_at_k(np.eye(2), np.eye(2), [0, 1], direction="both")
    with pytest.raises(ValueError, match="caption_ids"):
        recall_at_k(np.eye(2), np.eye(2), [0, 2])
    with pytest.raises(ValueError, match="k must"):
        recall_at_k(np.eye(2), np.eye(2), [0, 1], k=0)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    path = make_tiny_clip(
        tmp_path_factory.mktemp("metrics-clip"),
        image_size=16,
        patch_size=4,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        context_length=16,
    )
    shapes = make_shapes(24, image_size=16, random_state=0)
    tuner = CLIPContrastiveFinetuner(
        path, max_epochs=2, batch_size=8, caption_template="a {} shape", random_state=0
    )
    return tuner.fit(shapes.images, shapes.color), shapes


def test_finetuner_score_is_the_recall_at_1_scorer(tuned):
    tuner, shapes = tuned
    scorer = make_recall_scorer(k=1)
    assert scorer(tuner, shapes.images, shapes.color) == tuner.score(
        shapes.images, shapes.color
    )
    images = tuner.transform(shapes.images)
    distinct, ids = np.unique(shapes.color, return_inverse=True)
    texts = tuner.transform([f"a {c} shape" for c in distinct], modality="text")
    assert tuner.score(shapes.images, shapes.color) == recall_at_k(images, texts, ids)
    top5 = make_recall_scorer(k=5, direction="text_to_image")
    assert top5(tuner, shapes.images, shapes.color) == recall_at_k(
        images, texts, ids, k=5, direction="text_to_image"
    )


def test_scorer_in_cross_validation(tuned):
    tuner, shapes = tuned
    scores = cross_val_score(
        tuner,
        shapes.images,
        shapes.color,
        cv=2,
        scoring=make_recall_scorer(k=2),
        error_score="raise",
    )
    assert scores.shape == (2,) and np.all((0 <= scores) & (scores <= 1))
