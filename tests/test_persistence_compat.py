"""Estimators pickled by sklearn-clip 0.1.0 load and answer the same.

``tests/data/estimators-0.1.0.pkl`` was written by the 0.1.0 code (the tree
before the family table, ``sklearn_clip.exceptions`` and the precision rule):
a zero-shot classifier and an embedding transformer over a tiny CLIP, pickled
with their weights, with the images they saw and what they answered then.
"""

import pickle
from pathlib import Path

import numpy as np
import pytest

OLD = Path(__file__).parent / "data" / "estimators-0.1.0.pkl"


@pytest.fixture(scope="module")
def old():
    with open(OLD, "rb") as handle:
        return pickle.load(handle)


def test_a_0_1_0_zero_shot_classifier_answers_the_same(old):
    clf = pickle.loads(old["zero_shot"])
    assert clf.classes_.tolist() == ["blue", "green", "red"]
    np.testing.assert_allclose(
        clf.predict_proba(old["images"]), old["zero_shot_proba"], atol=1e-6
    )


def test_a_0_1_0_embedding_transformer_answers_the_same(old):
    embedder = pickle.loads(old["embedding"])
    np.testing.assert_allclose(
        embedder.transform(old["images"]), old["embedding_out"], atol=1e-6
    )
