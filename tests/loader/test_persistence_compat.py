"""Estimators pickled by sklearn-clip 0.1.0 load and answer the same.

``tests/data/estimators-0.1.0.pkl`` was written by the 0.1.0 code (the tree
before the family table, ``sklearn_clip.exceptions`` and the precision rule):
a zero-shot classifier and an embedding transformer over a tiny CLIP, pickled
with their weights, with the images they saw and what they answered then.

``tests/data/estimators-0.1.0-more.pkl``, written by the same script
(``tests/data/make_estimators_0_1_0.py --more``) on the same tree, holds every
other estimator class of 0.1.0, fitted at float32: the few-shot classifier
(both heads), nearest-neighbours searchers (pickled by default, so without
weights and re-resolving ``model``; with their weights; with a loaded handle
as ``model``; with the faiss index) and a contrastive fine-tuner; with the
model's files, the images and texts they were asked about, and their answers.

The rule: every 0.1.0 pickle still loads and answers the same, or
loading (or first use) fails with an error that names the version the pickle
was written by and says what to do.
"""

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parents[1] / "data"
OLD = DATA / "estimators-0.1.0.pkl"
MORE = DATA / "estimators-0.1.0-more.pkl"


@pytest.fixture(scope="module")
def old():
    with open(OLD, "rb") as handle:
        return pickle.load(handle)


@pytest.fixture(scope="module")
def more():
    with open(MORE, "rb") as handle:
        return pickle.load(handle)


@pytest.fixture(scope="module")
def model_home(more, tmp_path_factory):
    """A folder holding the 0.1.0 model under the relative name it was fitted
    with (the pickles without weights name it so)."""
    home = tmp_path_factory.mktemp("home-0.1.0")
    folder = home / more["model_dir"]
    folder.mkdir()
    for name, data in more["model_files"].items():
        (folder / name).write_bytes(data)
    return home


@pytest.fixture
def at_model_home(model_home, monkeypatch):
    """Work where the pickles' relative model path leads to the 0.1.0 model:
    a pickle without weights finds its model where it was (as a hub id is
    found again in the hub cache)."""
    monkeypatch.chdir(model_home)


def answers_the_same_or_names_the_version(old_pickle, use, check):
    """Load ``old_pickle`` and ``use`` it: then ``check`` the answers. Or, if
    loading or first use fails, the error must name 0.1.0 and what to do."""
    try:
        estimator = pickle.loads(old_pickle)
        repr(estimator)  # a notebook shows it: every parameter must be there
        answers = use(estimator)
    except Exception as error:  # whatever fails must say why
        message = str(error)
        assert "0.1.0" in message, f"{type(error).__name__}: {message}"
        assert re.search(r"\bfit\b|\brefit\b|pip install", message), message
        return
    check(estimator, answers)


def assert_same_neighbours(got, expected):
    distances, indices = got
    np.testing.assert_allclose(distances, expected[0], atol=1e-6)
    np.testing.assert_array_equal(indices, expected[1])


def test_the_0_1_0_data_was_written_by_the_0_1_0_tree(old, more):
    # Today's tree also says "0.1.0"; the pickles name 0.1.0's flat modules.
    assert old["version"] == more["version"] == "0.1.0"
    assert b"sklearn_clip._few_shot" in more["few_shot_linear"]
    assert b"sklearn_clip._finetune" in more["finetuner"]


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


@pytest.mark.parametrize("method", ["linear", "tip"])
def test_a_0_1_0_few_shot_classifier_answers_the_same(more, method):
    # Pickled with its weights, like the zero-shot classifier above.
    def check(clf, proba):
        assert clf.classes_.tolist() == more[f"few_shot_{method}_classes"].tolist()
        np.testing.assert_allclose(proba, more[f"few_shot_{method}_proba"], atol=1e-6)
        np.testing.assert_array_equal(
            clf.predict(more["queries"]), clf.classes_[proba.argmax(axis=1)]
        )

    answers_the_same_or_names_the_version(
        more[f"few_shot_{method}"],
        lambda clf: clf.predict_proba(more["queries"]),
        check,
    )


@pytest.mark.parametrize(
    "name", ["neighbors", "neighbors_weights", "neighbors_handle", "neighbors_faiss"]
)
def test_a_0_1_0_nearest_neighbors_answers_the_same(more, at_model_home, name):
    if name == "neighbors_faiss":
        pytest.importorskip("faiss")

    def use(search):
        return (
            search.kneighbors(more["queries"]),
            search.kneighbors(more["texts"], query_modality="text"),
        )

    def check(search, answers):
        assert search.n_samples_fit_ == len(more["images"])
        assert_same_neighbours(answers[0], more[f"{name}_images"])
        assert_same_neighbours(answers[1], more[f"{name}_texts"])

    answers_the_same_or_names_the_version(more[name], use, check)


def test_a_0_1_0_contrastive_finetuner_answers_the_same(more):
    # 0.1.0 pickles the tuned weights (they live only in memory) whatever
    # store_weights_in_pickle says; the start model is not needed to answer.
    def use(tuner):
        return (
            tuner.transform(more["queries"]),
            tuner.transform(more["texts"], modality="text"),
            tuner.score(more["images"], more["labels"]),
        )

    def check(tuner, answers):
        images, texts, score = answers
        assert tuner.n_iter_ == more["finetuner_n_iter"]
        np.testing.assert_allclose(images, more["finetuner_images"], atol=1e-6)
        np.testing.assert_allclose(texts, more["finetuner_texts"], atol=1e-6)
        assert score == more["finetuner_score"]

    answers_the_same_or_names_the_version(more["finetuner"], use, check)
