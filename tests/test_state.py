"""Only ``fit`` writes state: predicting, transforming and searching leave every
public attribute as it was, also when a row cannot be read (``on_error="nan"``),
and the rows that failed travel with the call's ``InputErrorWarning``."""

import copy
import warnings

import numpy as np
import pytest

from sklearn_clip import (
    CLIPEmbeddingTransformer,
    CLIPFewShotClassifier,
    CLIPNearestNeighbors,
    CLIPZeroShotClassifier,
    ModelHandle,
)
from sklearn_clip.exceptions import InputErrorWarning

LABELS = ["bird", "cat", "dog"]


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return list(rng.integers(0, 255, (n, 24, 24, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    path = tmp_path_factory.mktemp("state") / "broken.jpg"
    path.write_bytes(b"not an image")
    return str(path)


def public_state(estimator):
    """``{name: (the object, a deep copy of its value)}`` of the public attributes.

    The model handle is compared by identity only: copying it would copy the
    weights.
    """
    return {
        name: (value, value if isinstance(value, ModelHandle) else copy.deepcopy(value))
        for name, value in vars(estimator).items()
        if not name.startswith("_")
    }


def same_value(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and np.array_equal(
            a, b, equal_nan=a.dtype.kind in "fc"
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(same_value(x, y) for x, y in zip(a, b))
        )
    return a is b or a == b


def assert_untouched(before, estimator):
    after = vars(estimator)
    assert sorted(n for n in after if not n.startswith("_")) == sorted(before)
    for name, (obj, value) in before.items():
        assert after[name] is obj, f"{name} was replaced"
        assert same_value(after[name], value), f"{name} was changed in place"


def call_without_writes(estimator, call, rows, bad_rows):
    """Run ``call``; check it wrote nothing and that its warning names ``bad_rows``."""
    before = public_state(estimator)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputErrorWarning)
        call(rows)
    assert_untouched(before, estimator)
    ours = [w.message for w in caught if w.category is InputErrorWarning]
    if not bad_rows:
        assert ours == []
        return
    [warning] = ours
    assert [r["position"] for r in warning.errors] == bad_rows
    for record, position in zip(warning.errors, bad_rows):
        assert record["source"] == rows[position]
        assert record["index"] == position
        assert record["error"] == "UnidentifiedImageError"
        assert "cannot identify image file" in record["message"]


def queries(on_error, broken):
    """Query images: with an unreadable row 1 under ``on_error="nan"``."""
    good = images(3, seed=1)
    if on_error == "raise":
        return good, []
    return [good[0], broken, *good[1:]], [1]


ON_ERROR = pytest.mark.parametrize("on_error", ["raise", "nan"])
PREDICTIONS = ("predict", "predict_proba", "predict_log_proba", "decision_function")


@ON_ERROR
@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot_predictions_write_nothing(tiny_clip, broken, on_error, multi_label):
    clf = CLIPZeroShotClassifier(
        tiny_clip, candidate_labels=LABELS, multi_label=multi_label, on_error=on_error
    )
    if multi_label:
        # Thresholds learned from images, one of them unreadable under "nan".
        X, bad = queries(on_error, broken)
        Y = np.eye(3, dtype=int)[[0, 1, 2, 0][: len(X)]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputErrorWarning)
            clf.fit(X, Y)
        if on_error == "nan":
            assert [r["position"] for r in clf.input_errors_] == bad
    else:
        clf.fit()
    X, bad = queries(on_error, broken)
    for method in (
        "predict",
        "predict_proba",
        "predict_log_proba",
        "decision_function",
    ):
        call_without_writes(clf, getattr(clf, method), X, bad)


@ON_ERROR
@pytest.mark.parametrize("method", ["linear", "tip"])
def test_few_shot_predictions_write_nothing(tiny_clip, broken, on_error, method):
    X, y = images(6), np.array(LABELS * 2)
    regularization = 1.0 if method == "linear" else (0.01, 5.5)
    clf = CLIPFewShotClassifier(
        tiny_clip,
        candidate_labels=LABELS,
        method=method,
        regularization=regularization,
        on_error=on_error,
    ).fit(X, y)
    X, bad = queries(on_error, broken)
    for name in PREDICTIONS:
        call_without_writes(clf, getattr(clf, name), X, bad)


def test_few_shot_fit_records_its_own_unreadable_rows(tiny_clip, broken):
    X, y = [*images(6), broken], np.array([*LABELS * 2, "cat"])
    clf = CLIPFewShotClassifier(
        tiny_clip, candidate_labels=LABELS, regularization=1.0, on_error="nan"
    )
    with pytest.warns(InputErrorWarning) as caught:
        clf.fit(X, y)
    [warning] = [w.message for w in caught if w.category is InputErrorWarning]
    assert [r["position"] for r in warning.errors] == [6]
    assert clf.input_errors_ == warning.errors
    call_without_writes(clf, clf.predict, *queries("nan", broken))
    assert [r["position"] for r in clf.input_errors_] == [6]


@ON_ERROR
def test_transform_writes_nothing(tiny_clip, broken, on_error):
    X, bad = queries(on_error, broken)
    embedder = CLIPEmbeddingTransformer(tiny_clip, on_error=on_error).fit(X)
    call_without_writes(embedder, embedder.transform, X, bad)
    assert not hasattr(embedder, "input_errors_")


@ON_ERROR
def test_searches_write_nothing(tiny_clip, broken, on_error):
    collection = images(6)
    if on_error == "nan":
        collection.insert(2, broken)
    searcher = CLIPNearestNeighbors(tiny_clip, n_neighbors=2, on_error=on_error)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputErrorWarning)
        searcher.fit(collection)
    fit_errors = [r["position"] for r in searcher.input_errors_]
    assert fit_errors == ([2] if on_error == "nan" else [])
    X, bad = queries(on_error, broken)

    def search_images(rows):
        return searcher.kneighbors(rows, query_modality="image")

    def search_radius(rows):
        return searcher.radius_neighbors(rows, query_modality="image")

    call_without_writes(searcher, search_images, X, bad)
    call_without_writes(searcher, search_radius, X, bad)
    call_without_writes(searcher, searcher.kneighbors, X, bad)
    texts = ["a red circle", "a blue square"]
    call_without_writes(
        searcher,
        lambda rows: searcher.kneighbors(rows, query_modality="text"),
        texts,
        [],
    )
    assert not hasattr(searcher, "query_errors_")
