import os
import shutil
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.special import softmax
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import DataConversionWarning
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, cross_val_predict

from sklearn_clip import (
    CLIPZeroShotClassifier,
    clear_model_cache,
    model_cache_info,
)
from sklearn_clip._backends.torch.tensors import pixel_values, tokenize
from sklearn_clip._classify.prompts import OPENAI_IMAGENET_7_TEMPLATES
from sklearn_clip.exceptions import InputErrorWarning

LABELS = ["red circle", "blue square", "green triangle"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, gradient):
    """20 image files and their labels, four or more of each class."""
    folder = tmp_path_factory.mktemp("zero-shot-images")
    paths, labels = [], []
    for i in range(20):
        array = gradient(22 + i % 4, 34 - i % 5, seed=100 + i)
        array[..., i % 3] = 255
        path = folder / f"shape_{i}.png"
        Image.fromarray(array).save(path)
        paths.append(str(path))
        labels.append(LABELS[i % 3])
    return np.asarray(paths, dtype=object), np.asarray(labels, dtype=object)


def test_acceptance_1_matches_the_transformers_pipeline(
    float32, tiny_clip_path, shapes
):
    """Acceptance 1: the same probabilities as the zero-shot pipeline."""
    from transformers import pipeline

    paths, _ = shapes
    template = "This is a photo of {}."
    clf = CLIPZeroShotClassifier(tiny_clip_path, templates=template)
    proba = clf.fit(None, LABELS).predict_proba(paths)
    images = [Image.open(path).convert("RGB") for path in paths]
    reference = pipeline("zero-shot-image-classification", model=tiny_clip_path)
    results = reference(images, candidate_labels=LABELS, hypothesis_template=template)
    expected = np.array(
        [
            [{r["label"]: r["score"] for r in row}[c] for c in clf.classes_]
            for row in results
        ]
    )
    worst = float(np.abs(proba - expected).max())
    print(f"pipeline vs CLIPZeroShotClassifier: max |difference| = {worst:.2e}")
    assert worst < 1e-5
    assert (clf.classes_[expected.argmax(1)] == clf.predict(paths)).all()


def test_siglip_logits_are_the_models_own(
    float32, tiny_siglip_path, tiny_siglip, shapes
):
    paths, _ = shapes
    clf = CLIPZeroShotClassifier(tiny_siglip_path, templates="{}").fit(None, LABELS)
    assert tiny_siglip.logit_bias is not None
    assert clf.logit_bias_ == tiny_siglip.logit_bias
    images = [Image.open(path).convert("RGB") for path in paths[:4]]
    pixels = pixel_values(images, tiny_siglip.image_config)
    input_ids, mask = tokenize(tiny_siglip, list(clf.classes_))
    with torch.inference_mode():
        logits = tiny_siglip.model(
            input_ids=input_ids, attention_mask=mask, pixel_values=pixels
        ).logits_per_image.numpy()
    np.testing.assert_allclose(clf.decision_function(paths[:4]), logits, atol=1e-4)
    sigmoid = clf.predict_sigmoid(paths[:4])
    np.testing.assert_allclose(sigmoid, 1 / (1 + np.exp(-logits)), atol=1e-5)
    np.testing.assert_allclose(clf.predict_proba(paths[:4]), softmax(logits, 1), 1e-5)


def test_predict_sigmoid_needs_a_sigmoid_model(tiny_clip_path, shapes):
    clf = CLIPZeroShotClassifier(tiny_clip_path).fit(None, LABELS)
    assert clf.logit_bias_ is None
    with pytest.raises(ValueError, match="SigLIP-style model"):
        clf.predict_sigmoid(shapes[0])


def test_outputs_are_consistent(float32, tiny_clip, tiny_clip_path, shapes):
    paths, _ = shapes
    clf = CLIPZeroShotClassifier(tiny_clip_path, candidate_labels=LABELS).fit()
    logits = clf.decision_function(paths)
    assert logits.shape == (20, 3) and logits.dtype == np.float64
    expected = tiny_clip.logit_scale * (
        tiny_clip.encode_images(list(paths)) @ clf.class_embeddings_.T
    )
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    np.testing.assert_allclose(clf.predict_proba(paths), softmax(logits, 1), 1e-12)
    np.testing.assert_allclose(
        np.exp(clf.predict_log_proba(paths)), clf.predict_proba(paths), 1e-12
    )
    assert (clf.predict(paths) == clf.classes_[logits.argmax(1)]).all()
    y = clf.predict(paths)
    assert clf.score(paths, y) == 1.0


def test_binary_decision_function_is_one_dimensional(tiny_clip_path, shapes):
    paths, _ = shapes
    clf = CLIPZeroShotClassifier(tiny_clip_path, candidate_labels=["dog", "cat"]).fit()
    assert clf.classes_.tolist() == ["cat", "dog"]
    decision = clf.decision_function(paths)
    assert decision.shape == (20,)
    proba = clf.predict_proba(paths)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-decision)), atol=1e-12)
    assert (clf.predict(paths) == np.where(decision > 0, "dog", "cat")).all()


def test_label_space_from_y_or_candidates(tiny_clip_path, shapes):
    paths, labels = shapes
    clf = CLIPZeroShotClassifier(tiny_clip_path).fit(paths, labels)
    assert clf.classes_.tolist() == sorted(LABELS)
    clf = CLIPZeroShotClassifier(tiny_clip_path, candidate_labels=[*LABELS, "cat"])
    clf.fit(paths[:3], labels[:3])
    assert clf.classes_.tolist() == sorted([*LABELS, "cat"])
    assert clf.class_embeddings_.shape == (4, 32)
    with pytest.raises(ValueError, match=r"not in candidate_labels: \['red circle'\]"):
        clf.set_params(candidate_labels=LABELS[1:]).fit(paths, labels)
    with pytest.raises(ValueError, match="needs a label space"):
        CLIPZeroShotClassifier(tiny_clip_path).fit(paths)


def test_non_string_labels_need_names(tiny_clip_path, shapes):
    paths, labels = shapes
    codes = np.unique(labels, return_inverse=True)[1]
    with pytest.raises(ValueError, match=r"\[0, 1, 2\] are not strings"):
        CLIPZeroShotClassifier(tiny_clip_path).fit(paths, codes)
    names = dict(enumerate(np.unique(labels)))
    by_code = CLIPZeroShotClassifier(tiny_clip_path, candidate_labels=names)
    by_name = CLIPZeroShotClassifier(tiny_clip_path).fit(paths, labels)
    assert by_code.fit(paths, codes).classes_.tolist() == [0, 1, 2]
    np.testing.assert_allclose(
        by_code.predict_proba(paths), by_name.predict_proba(paths), atol=1e-7
    )
    assert (by_name.classes_[by_code.predict(paths)] == by_name.predict(paths)).all()


def test_cross_val_predict_proba_raises_instead_of_prompting_with_codes(
    tiny_clip_path, shapes
):
    paths, labels = shapes
    for clf in (
        CLIPZeroShotClassifier(tiny_clip_path),
        CLIPZeroShotClassifier(tiny_clip_path, candidate_labels=LABELS),
    ):
        with pytest.raises(ValueError, match="cross_val_predict"):
            cross_val_predict(clf, paths, labels, cv=2, method="predict_proba")
    predicted = cross_val_predict(CLIPZeroShotClassifier(tiny_clip_path), paths, labels)
    assert set(predicted) <= set(LABELS)


def test_targets_are_checked(tiny_clip_path, shapes):
    paths, labels = shapes
    clf = CLIPZeroShotClassifier(tiny_clip_path)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        clf.fit(paths, np.linspace(0, 1, 20))
    with pytest.raises(ValueError, match="Input y contains NaN"):
        clf.fit(paths, np.where(np.arange(20) == 3, None, labels))
    with pytest.warns(DataConversionWarning):
        clf.fit(paths, labels.reshape(-1, 1))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        clf.fit(paths[:5], labels)


def test_templates_are_checked_at_fit_not_before(tiny_clip_path):
    clf = CLIPZeroShotClassifier(tiny_clip_path, templates="a photo of a {label}")
    with pytest.raises(ValueError, match=r"exactly one '\{\}' placeholder"):
        clf.fit(None, LABELS)
    clf.set_params(templates=["a {}.", "no placeholder"])
    with pytest.raises(ValueError, match="'no placeholder'"):
        clf.fit(None, LABELS)


def test_templates_are_ensembled(float32, tiny_clip, tiny_clip_path):
    clf = CLIPZeroShotClassifier(tiny_clip_path, templates="openai_imagenet_7")
    clf.fit(None, LABELS)
    for label, row in zip(clf.classes_, clf.class_embeddings_):
        prompts = [t.format(label) for t in OPENAI_IMAGENET_7_TEMPLATES]
        mean = tiny_clip.encode_texts(prompts).mean(axis=0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), atol=1e-6)
    simple = CLIPZeroShotClassifier(tiny_clip_path).fit(None, LABELS)
    assert not np.allclose(simple.class_embeddings_, clf.class_embeddings_)


def test_label_descriptions(float32, tiny_clip, tiny_clip_path):
    descriptions = {"red circle": ["a round red thing"], "blue square": "a blue box"}
    clf = CLIPZeroShotClassifier(
        tiny_clip_path, templates="{}", label_descriptions=descriptions
    ).fit(None, LABELS)
    expected = tiny_clip.encode_texts(["red circle", "a round red thing"]).mean(0)
    row = clf.class_embeddings_[clf.classes_.tolist().index("red circle")]
    np.testing.assert_allclose(row, expected / np.linalg.norm(expected), atol=1e-6)
    only = clf.set_params(templates=None, label_descriptions={0: "a cat", 1: "a dog"})
    assert only.fit(None, [0, 1]).classes_.tolist() == [0, 1]
    with pytest.raises(ValueError, match="class 2 has no prompt"):
        only.fit(None, [0, 1, 2])


def test_acceptance_2_grid_search_over_templates_loads_the_weights_once(
    tiny_clip_path, shapes, isolated_cache
):
    """Acceptance 2: 3 candidates x 5 folds + refit, one load."""
    paths, labels = shapes
    clear_model_cache()
    before = model_cache_info()["loads"]
    search = GridSearchCV(
        CLIPZeroShotClassifier(tiny_clip_path, candidate_labels=LABELS),
        {"templates": ["simple", "openai_imagenet_7", "This is a photo of {}."]},
        cv=5,
    ).fit(paths, labels)
    loads = model_cache_info()["loads"] - before
    scores = search.cv_results_["mean_test_score"].round(2)
    print(f"GridSearchCV: 16 fits, {loads} load(s), mean scores {scores}")
    assert loads == 1
    assert search.best_params_["templates"] in search.param_grid["templates"]
    assert search.predict(paths).shape == (20,)


def test_calibration_on_a_frozen_classifier(tiny_clip_path, shapes):
    paths, labels = shapes
    clf = CLIPZeroShotClassifier(tiny_clip_path, candidate_labels=LABELS).fit()
    calibrated = CalibratedClassifierCV(FrozenEstimator(clf)).fit(paths, labels)
    proba = calibrated.predict_proba(paths)
    assert proba.shape == (20, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-9)
    assert calibrated.classes_.tolist() == clf.classes_.tolist()
    binary = CLIPZeroShotClassifier(tiny_clip_path, candidate_labels=LABELS[:2]).fit()
    keep = np.isin(labels, LABELS[:2])
    sigmoid = CalibratedClassifierCV(FrozenEstimator(binary), method="sigmoid")
    assert sigmoid.fit(paths[keep], labels[keep]).predict_proba(paths).shape == (20, 2)


def test_acceptance_4_small_pickle_with_identical_predictions(tiny_clip_path, shapes):
    """Acceptance 4: a weight-less joblib file, and a self-contained one."""
    paths, labels = shapes
    folder = os.path.dirname(paths[0])
    clf = CLIPZeroShotClassifier(tiny_clip_path, templates="openai_imagenet")
    clf.fit(paths, labels)
    expected = clf.predict_proba(paths)
    light = os.path.join(folder, "light.joblib")
    joblib.dump(clf, light)
    size = os.path.getsize(light)
    print(f"joblib.dump without weights: {size} bytes")
    assert size < 100_000
    restored = joblib.load(light)
    np.testing.assert_array_equal(restored.predict_proba(paths), expected)
    np.testing.assert_array_equal(restored.predict(paths), clf.predict(paths))


def test_acceptance_4_stored_weights_survive_the_source(
    tiny_clip_path, shapes, tmp_path, isolated_cache
):
    paths, labels = shapes
    source = shutil.copytree(tiny_clip_path, tmp_path / "model")
    clf = CLIPZeroShotClassifier(source, store_weights_in_pickle=True).fit(
        paths, labels
    )
    expected = clf.predict_proba(paths)
    heavy = tmp_path / "heavy.joblib"
    joblib.dump(clf, heavy)
    print(f"joblib.dump with weights: {os.path.getsize(heavy)} bytes")
    shutil.rmtree(source)
    clear_model_cache()
    restored = joblib.load(heavy)
    np.testing.assert_allclose(restored.predict_proba(paths), expected, atol=1e-6)
    assert (restored.predict(paths) == clf.predict(paths)).all()
    assert model_cache_info()["size"] == 0  # nothing came from the (gone) source


def test_acceptance_5_batch_size_and_container_invariance(tiny_clip_path, shapes):
    """Acceptance 5: the same probabilities for any batch size and container."""
    paths, _ = shapes
    paths = paths[:10]
    containers = {
        "list": paths.tolist(),
        "Series": pd.Series(paths, index=np.arange(10) * 3),
        "one-column DataFrame": pd.DataFrame({"image": paths}),
        "(n, 1) object array": paths.reshape(-1, 1),
    }
    reference = None
    worst = 0.0
    for batch_size in (1, 7, 64):
        clf = CLIPZeroShotClassifier(
            tiny_clip_path, candidate_labels=LABELS, batch_size=batch_size
        )
        for X in containers.values():
            proba = clf.fit(X, None).predict_proba(X)
            reference = proba if reference is None else reference
            worst = max(worst, float(np.abs(proba - reference).max()))
    print(f"zero-shot: max |difference| over batch sizes x containers = {worst}")
    assert worst <= 1e-6


def test_on_error_nan(tiny_clip_path, shapes, tmp_path):
    paths, labels = shapes
    missing = str(tmp_path / "missing.png")
    X = pd.Series([paths[0], missing, paths[1]], index=[10, 11, 12])
    y = np.asarray([labels[0], labels[1], labels[1]], dtype=object)
    strict = CLIPZeroShotClassifier(tiny_clip_path, candidate_labels=LABELS).fit()
    with pytest.raises(ValueError, match=r"row 1 \(index 11\), path '.*missing.png'"):
        strict.predict(X)
    clf = CLIPZeroShotClassifier(
        tiny_clip_path, candidate_labels=LABELS, on_error="nan"
    ).fit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputErrorWarning)
        proba = clf.predict_proba(X)
        predicted = clf.predict(X)
        score = clf.score(X, y)
    assert np.isnan(proba[1]).all()
    np.testing.assert_allclose(proba[[0, 2]], strict.predict_proba(X.iloc[[0, 2]]))
    assert predicted.dtype == object and predicted[1] is None
    assert predicted[[0, 2]].tolist() == strict.predict(X.iloc[[0, 2]]).tolist()
    good = strict.predict(X.iloc[[0, 2]]) == y[[0, 2]]
    assert score == pytest.approx(good.sum() / 3)
    # Each call's warning carries the row; the classifier records nothing.
    ours = [w.message for w in caught if w.category is InputErrorWarning]
    assert len(ours) == 3
    for warning in ours:
        [record] = warning.errors
        assert record["position"] == 1 and record["index"] == 11
        assert record["source"] == missing and record["error"] == "FileNotFoundError"
    assert not hasattr(clf, "input_errors_")
    with pytest.warns(InputErrorWarning):
        clf.decision_function(X)
