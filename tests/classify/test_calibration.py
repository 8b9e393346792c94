"""Temperature scaling (scikit-learn) and conformal sets (MAPIE) on our
classifiers, fitted once and frozen."""

import numpy as np
import pytest
from mapie.classification import SplitConformalClassifier
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from sklearn_clip import CLIPFewShotClassifier, CLIPZeroShotClassifier

LABELS = ["bird", "cat", "dog"]
SHAPES = ("circle", "square", "triangle", "cross", "diamond")


def expected_calibration_error(labels, proba, classes, n_bins=15):
    """Top-label ECE: the bin-weighted gap between confidence and accuracy."""
    confidence = proba.max(axis=1)
    correct = classes[proba.argmax(axis=1)] == labels
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    gaps = [
        abs(correct[bins == b].mean() - confidence[bins == b].mean())
        * np.mean(bins == b)
        for b in np.unique(bins)
    ]
    return float(np.sum(gaps))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(2)
    return rng.integers(0, 256, (18, 24, 24, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def classifiers(tiny_clip_path, images):
    labels = np.repeat(LABELS, 6)
    return labels, {
        "zero-shot": CLIPZeroShotClassifier(tiny_clip_path).fit(None, LABELS),
        "few-shot": CLIPFewShotClassifier(tiny_clip_path, cv=3, random_state=0).fit(
            images, labels
        ),
    }


@pytest.mark.parametrize("name", ["zero-shot", "few-shot"])
def test_temperature_scaling_a_frozen_classifier(classifiers, images, name):
    labels, fitted = classifiers
    clf = fitted[name]
    calibrated = CalibratedClassifierCV(FrozenEstimator(clf), method="temperature")
    proba = calibrated.fit(images, labels).predict_proba(images)
    assert calibrated.classes_.tolist() == clf.classes_.tolist()
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-9)
    # A temperature rescales the logits: the ranking of classes is kept.
    np.testing.assert_array_equal(
        np.argsort(proba, axis=1), np.argsort(clf.predict_proba(images), axis=1)
    )


@pytest.mark.parametrize("name", ["zero-shot", "few-shot"])
def test_mapie_prediction_sets_from_a_prefit_classifier(classifiers, images, name):
    labels, fitted = classifiers
    conformal = SplitConformalClassifier(
        estimator=fitted[name], prefit=True, confidence_level=0.9
    )
    conformal.conformalize(images, labels)
    predicted, sets = conformal.predict_set(images)
    np.testing.assert_array_equal(predicted, fitted[name].predict(images))
    assert sets.shape == (18, 3, 1) and sets.dtype == bool


# -- slow: coverage and calibration error on the demo's model --------------------


@pytest.fixture(scope="module")
def world(demo_model_path, tmp_path_factory):
    from sklearn_clip.datasets import COLORS, make_shapes

    options = {
        "candidate_labels": list(SHAPES),
        "templates": ["a {}", *(f"a {color} {{}}" for color in COLORS)],
        "cache_dir": tmp_path_factory.mktemp("calibration-cache"),
    }
    train = make_shapes(80, image_size=32, random_state=301)
    calibration = make_shapes(1000, image_size=32, random_state=302)
    test = make_shapes(1000, image_size=32, random_state=303)
    fitted = {
        "zero-shot": CLIPZeroShotClassifier(demo_model_path, **options).fit(),
        "few-shot": CLIPFewShotClassifier(
            demo_model_path, random_state=0, **options
        ).fit(train.images, train.shape.astype(str)),
    }
    return (
        fitted,
        (calibration.images, calibration.shape.astype(str)),
        (
            test.images,
            test.shape.astype(str),
        ),
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zero-shot", "few-shot"])
def test_acceptance_4_conformal_coverage_at_confidence_0_9(world, name):
    fitted, calibration, (X_test, y_test) = world
    conformal = SplitConformalClassifier(
        estimator=fitted[name], prefit=True, confidence_level=0.9
    ).conformalize(*calibration)
    _, sets = conformal.predict_set(X_test)
    classes = fitted[name].classes_
    covered = sets[np.arange(len(y_test)), np.searchsorted(classes, y_test), 0]
    print(
        f"{name}: coverage {covered.mean():.3f}, mean set size {sets.sum(1).mean():.2f}"
    )
    assert 0.88 <= covered.mean() <= 0.94


@pytest.mark.slow
def test_acceptance_4_temperature_scaling_lowers_the_zero_shot_ece(world):
    fitted, (X_cal, y_cal), (X_test, y_test) = world
    clf = fitted["zero-shot"]
    calibrated = CalibratedClassifierCV(FrozenEstimator(clf), method="temperature")
    calibrated.fit(X_cal, y_cal)
    before = expected_calibration_error(y_test, clf.predict_proba(X_test), clf.classes_)
    after = expected_calibration_error(
        y_test, calibrated.predict_proba(X_test), clf.classes_
    )
    print(f"zero-shot ECE: {before:.3f} before, {after:.3f} after temperature scaling")
    assert after < before
