"""scikit-learn compatibility of the embedding transformer and zero-shot classifier.

The estimators declare honest input tags (strings and images, not 2-D numeric
arrays), so ``check_estimator`` on them runs almost nothing:
tests/test_sklearn_checks.py runs scikit-learn's checks through an adapter
that takes arrays. Here the data-free scikit-learn checks run one by one, and
the data-dependent ones in our own versions, on real images and texts.
"""

import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.utils import estimator_checks, get_tags

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPEmbeddingTransformer,
    CLIPFewShotClassifier,
    CLIPNearestNeighbors,
    CLIPZeroShotClassifier,
    clear_model_cache,
    model_cache_info,
)
from sklearn_clip._base import decoding_threads

LABELS = ["bird", "cat", "dog"]


DATA_FREE_CHECKS = [
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_no_attributes_set_in_init",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
]

ESTIMATORS = {
    "embedding-image": lambda path: CLIPEmbeddingTransformer(path),
    "embedding-text": lambda path: CLIPEmbeddingTransformer(path, modality="text"),
    "zero-shot": lambda path: CLIPZeroShotClassifier(path, candidate_labels=LABELS),
    "few-shot": lambda path: CLIPFewShotClassifier(
        path, candidate_labels=LABELS, cv=2, random_state=0
    ),
}
CLASSES = [CLIPEmbeddingTransformer, CLIPZeroShotClassifier, CLIPFewShotClassifier]
# Every public estimator, for the checks that need no data.
ALL_CLASSES = [*CLASSES, CLIPNearestNeighbors, CLIPContrastiveFinetuner]


@pytest.fixture(scope="module")
def images(tmp_path_factory, gradient):
    folder = tmp_path_factory.mktemp("compat-images")
    paths = []
    for i in range(9):
        path = folder / f"image_{i}.png"
        Image.fromarray(gradient(20 + 3 * i, 40 - 2 * i, seed=i)).save(path)
        paths.append(str(path))
    return paths


def _inputs(name, images):
    if name == "embedding-text":
        return [f"a photo of thing {i}" for i in range(len(images))]
    return images


def _outputs(estimator, X):
    """Every output the estimator offers, by method name."""
    if is_classifier(estimator):
        return {
            "predict": estimator.predict(X),
            "predict_proba": estimator.predict_proba(X),
            "decision_function": estimator.decision_function(X),
        }
    return {"transform": estimator.transform(X)}


def _assert_same(first, second, atol=1e-6):
    assert first.keys() == second.keys()
    for method in first:
        if first[method].dtype.kind in "fc":
            np.testing.assert_allclose(first[method], second[method], atol=atol)
        else:
            np.testing.assert_array_equal(first[method], second[method])


# -- the data-free checks from scikit-learn ------------------------------------


@pytest.mark.parametrize("check_name", DATA_FREE_CHECKS)
@pytest.mark.parametrize("estimator_class", ALL_CLASSES)
def test_sklearn_data_free_check(estimator_class, check_name):
    check = getattr(estimator_checks, check_name)
    check(estimator_class.__name__, estimator_class())


def test_sklearn_unfitted_checks():
    for classifier in (CLIPZeroShotClassifier, CLIPFewShotClassifier):
        estimator_checks.check_estimators_unfitted(classifier.__name__, classifier())
    estimator_checks.check_transformers_unfitted(
        "CLIPEmbeddingTransformer", CLIPEmbeddingTransformer()
    )
    estimator_checks.check_transformers_unfitted(
        "CLIPContrastiveFinetuner", CLIPContrastiveFinetuner()
    )
    with pytest.raises(NotFittedError):
        CLIPNearestNeighbors().kneighbors(["a photo"])


@pytest.mark.parametrize("estimator_class", ALL_CLASSES)
def test_check_estimator_runs_only_the_clone_check(estimator_class):
    # Honest tags make scikit-learn skip its data-dependent checks: this test
    # says so, so that a green check_estimator is not mistaken for full cover.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checks = list(estimator_checks.estimator_checks_generator(estimator_class()))
    assert [check.func.__name__ for _, check in checks] == ["check_estimator_cloneable"]


@pytest.mark.parametrize("estimator_class", CLASSES)
def test_tags_are_honest(estimator_class):
    tags = get_tags(estimator_class())
    assert not tags.input_tags.two_d_array
    assert tags.input_tags.string and tags.input_tags.three_d_array
    assert not tags.input_tags.allow_nan


def test_zero_shot_tags():
    assert get_tags(CLIPZeroShotClassifier()).target_tags.required
    tags = get_tags(CLIPZeroShotClassifier(candidate_labels=LABELS))
    assert not tags.target_tags.required
    assert tags.classifier_tags.poor_score and not tags.classifier_tags.multi_label


# -- our versions of the data-dependent checks ---------------------------------


@pytest.mark.parametrize("name", ESTIMATORS)
def test_fit_returns_self_and_loads_nothing_before(name, tiny_clip_path, images):
    before = model_cache_info()["loads"] + model_cache_info()["hits"]
    estimator = ESTIMATORS[name](tiny_clip_path)
    assert model_cache_info()["loads"] + model_cache_info()["hits"] == before
    assert "_handle" not in vars(estimator)
    assert estimator.fit(_inputs(name, images), LABELS * 3) is estimator


@pytest.mark.parametrize("name", ESTIMATORS)
def test_unfitted_estimator_raises_not_fitted(name, tiny_clip_path, images):
    estimator = ESTIMATORS[name](tiny_clip_path)
    methods = ["predict", "predict_proba", "predict_log_proba", "decision_function"]
    methods += ["transform", "get_feature_names_out", "predict_sigmoid"]
    for method in methods:
        if hasattr(estimator, method):
            with pytest.raises(NotFittedError):
                getattr(estimator, method)(_inputs(name, images))


@pytest.mark.parametrize("name", ESTIMATORS)
def test_clone_keeps_params_and_drops_fitted_state(name, tiny_clip_path, images):
    estimator = ESTIMATORS[name](tiny_clip_path).fit(_inputs(name, images), LABELS * 3)
    cloned = clone(estimator)
    assert cloned.get_params() == estimator.get_params()
    assert not [key for key in vars(cloned) if key.endswith("_")]
    assert "_handle" not in vars(cloned)
    _assert_same(
        _outputs(cloned.fit(_inputs(name, images), LABELS * 3), _inputs(name, images)),
        _outputs(estimator, _inputs(name, images)),
    )


def test_clone_keeps_a_handle_by_identity(tiny_clip):
    estimator = CLIPZeroShotClassifier(tiny_clip, candidate_labels=LABELS)
    assert clone(estimator).model is tiny_clip


@pytest.mark.parametrize("name", ESTIMATORS)
def test_get_set_params_round_trip(name, tiny_clip_path):
    estimator = ESTIMATORS[name](tiny_clip_path)
    params = estimator.get_params()
    assert estimator.set_params(batch_size=3, progress=True) is estimator
    assert estimator.get_params()["batch_size"] == 3
    estimator.set_params(**params)
    assert estimator.get_params() == params
    with pytest.raises(ValueError, match="Invalid parameter"):
        estimator.set_params(not_a_parameter=1)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_fit_validates_parameters(name, tiny_clip_path, images):
    estimator = ESTIMATORS[name](tiny_clip_path).set_params(batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        estimator.fit(_inputs(name, images), LABELS * 3)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_fit_does_not_change_params_and_transform_not_state(
    name, tiny_clip_path, images
):
    estimator = ESTIMATORS[name](tiny_clip_path)
    before = joblib.hash(estimator.get_params())
    estimator.fit(_inputs(name, images), LABELS * 3)
    assert joblib.hash(estimator.get_params()) == before
    public = [key for key in vars(estimator) if not key.startswith("_")]
    assert all(key.endswith("_") or key in estimator.get_params() for key in public)
    state = dict(vars(estimator))
    _outputs(estimator, _inputs(name, images))
    assert vars(estimator).keys() == state.keys()
    assert all(vars(estimator)[key] is state[key] for key in state)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_refit_is_idempotent(name, tiny_clip_path, images):
    estimator = ESTIMATORS[name](tiny_clip_path).fit(_inputs(name, images), LABELS * 3)
    first = _outputs(estimator, _inputs(name, images))
    estimator.fit(_inputs(name, images), LABELS * 3)
    _assert_same(first, _outputs(estimator, _inputs(name, images)), atol=0)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_pickle_round_trip(name, tiny_clip_path, images):
    estimator = ESTIMATORS[name](tiny_clip_path).fit(_inputs(name, images), LABELS * 3)
    expected = _outputs(estimator, _inputs(name, images))
    for keep in (False, True):
        estimator.set_params(store_weights_in_pickle=keep)
        restored = pickle.loads(pickle.dumps(estimator))
        assert "_handle" not in vars(restored)
        _assert_same(expected, _outputs(restored, _inputs(name, images)), atol=0)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_rows_permuted_and_sliced_give_permuted_outputs(name, tiny_clip_path, images):
    X = np.asarray(_inputs(name, images), dtype=object)
    estimator = ESTIMATORS[name](tiny_clip_path).fit(X, LABELS * 3)
    full = _outputs(estimator, X)
    order = np.random.default_rng(0).permutation(len(X))
    permuted = _outputs(estimator, X[order])
    _assert_same({k: v[order] for k, v in full.items()}, permuted)
    _assert_same({k: v[2:5] for k, v in full.items()}, _outputs(estimator, X[2:5]))
    _assert_same({k: v[:1] for k, v in full.items()}, _outputs(estimator, X[:1]))


@pytest.mark.parametrize("name", ESTIMATORS)
def test_empty_input_gives_empty_output(name, tiny_clip_path, images):
    estimator = ESTIMATORS[name](tiny_clip_path).fit(_inputs(name, images), LABELS * 3)
    for method, output in _outputs(estimator, []).items():
        assert output.shape[0] == 0, method


@pytest.mark.parametrize("name", ESTIMATORS)
def test_missing_cells_raise_naming_the_row(name, tiny_clip_path, images):
    estimator = ESTIMATORS[name](tiny_clip_path).fit(_inputs(name, images), LABELS * 3)
    X = pd.Series([*_inputs(name, images)[:2], None], index=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"row 2 \(index 'c'\)"):
        _outputs(estimator, X)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_dataframe_records_feature_names_other_inputs_do_not(
    name, tiny_clip_path, images
):
    column = "text" if name == "embedding-text" else "image"
    frame = pd.DataFrame({column: _inputs(name, images)})
    estimator = ESTIMATORS[name](tiny_clip_path).fit(frame, LABELS * 3)
    assert estimator.n_features_in_ == 1
    assert estimator.feature_names_in_.tolist() == [column]
    with pytest.raises(ValueError, match="feature names should match"):
        _outputs(estimator, frame.rename(columns={column: "other"}))
    estimator.fit(frame[column], LABELS * 3)
    assert not hasattr(estimator, "n_features_in_")
    assert not hasattr(estimator, "feature_names_in_")
    with pytest.raises(ValueError, match="one .* column"):
        estimator.fit(frame.assign(extra=1), LABELS * 3)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_pipeline_gives_the_same_outputs(name, tiny_clip_path, images):
    X = _inputs(name, images)
    estimator = ESTIMATORS[name](tiny_clip_path)
    pipeline = make_pipeline(clone(estimator)).fit(X, LABELS * 3)
    _assert_same(_outputs(estimator.fit(X, LABELS * 3), X), _outputs(pipeline, X), 0)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_html_repr_does_not_load_the_model(
    name, tiny_clip_path, images, isolated_cache
):
    estimator = ESTIMATORS[name](tiny_clip_path).fit(_inputs(name, images), LABELS * 3)
    restored = pickle.loads(pickle.dumps(estimator))
    clear_model_cache()
    before = model_cache_info()["loads"]
    assert "CLIP" in ESTIMATORS[name](tiny_clip_path)._repr_html_()
    assert "embedding_dim_" in restored._repr_html_()
    assert model_cache_info()["loads"] == before
    assert "_handle" not in vars(restored)


@pytest.mark.parametrize("estimator_class", ALL_CLASSES)
def test_html_repr_links_to_the_estimators_api_page(estimator_class):
    name = estimator_class.__name__
    page = f"api/generated/sklearn_clip.{name}.html"
    assert estimator_class()._get_doc_link().endswith(page)
    assert page in estimator_class()._repr_html_()


@pytest.mark.parametrize("n_jobs", [-1, -2])
def test_negative_n_jobs_counts_back_from_every_core(n_jobs, tiny_clip_path, images):
    from sklearn_clip._encoding.prefetch import usable_cores

    estimator = CLIPEmbeddingTransformer(tiny_clip_path, n_jobs=n_jobs)
    reference = CLIPEmbeddingTransformer(tiny_clip_path, n_jobs=1)
    _assert_same(
        _outputs(estimator.fit(images), images), _outputs(reference.fit(images), images)
    )
    assert decoding_threads(n_jobs) == max(1, usable_cores() + 1 + n_jobs)
    with pytest.raises(ValueError, match="n_jobs"):
        CLIPEmbeddingTransformer(tiny_clip_path, n_jobs=0).fit(images)
