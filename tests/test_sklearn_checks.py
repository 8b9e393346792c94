"""scikit-learn's own estimator checks, run on every estimator through an adapter.

The estimators take images and texts, so their honest tags make
``parametrize_with_checks`` skip every check that feeds random 2-D float
arrays. Here each estimator is wrapped, in this module only, by a subclass
that takes such an array: it validates it as scikit-learn's own estimators do
(``validate_data``: NaN, inf, sparse, feature counts and names), turns each
row into a small image by a fixed projection, and, for the classifiers, each
numeric label into a class name. Everything behind the adapter (prompts,
encoding, fitting, outputs, pickling, cloning) is the estimator's own, so the
checks test it; the checks that cannot hold for an image model are listed in
:data:`EXPECTED_FAILURES` with the reason.
"""

import atexit
import functools
import shutil
import tempfile
import warnings

import numpy as np
import pytest
from sklearn.utils._tags import TransformerTags
from sklearn.utils.estimator_checks import (
    estimator_checks_generator,
    parametrize_with_checks,
)
from sklearn.utils.validation import check_is_fitted, validate_data

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPEmbeddingTransformer,
    CLIPFewShotClassifier,
    CLIPNearestNeighbors,
    CLIPZeroShotClassifier,
)
from sklearn_clip.toy import make_tiny_clip


@functools.cache
def tiny_model():
    # parametrize_with_checks needs its estimators when the module is
    # collected, before any fixture runs: the model is written here, once.
    folder = tempfile.mkdtemp(prefix="sklearn-checks-model-")
    atexit.register(shutil.rmtree, folder, True)
    shape = {"image_size": 16, "patch_size": 4, "hidden_size": 32, "num_heads": 2}
    return str(make_tiny_clip(folder, num_layers=1, context_length=16, **shape))


def as_images(X):
    """Rows of numbers -> 8x8 RGB images, each pixel a fixed mix of the row."""
    X = np.asarray(X, dtype=np.float64)
    projection = np.random.default_rng(X.shape[1]).standard_normal((X.shape[1], 192))
    pixels = 255 / (1 + np.exp(-X @ projection / np.sqrt(X.shape[1])))
    return pixels.reshape(len(X), 8, 8, 3).astype(np.uint8)


def _class_names(y):
    # Prompts are built from class names: a numeric label 3 is "class 3".
    return {label: f"class {label}" for label in np.unique(y).tolist()}


class ArrayInput:
    """Numbers in, images to the estimator; the estimator's own code after."""

    names_classes = False  # whether fit gives the classifier its class names

    def fit(self, X, y=None, **params):
        if isinstance(X, np.ndarray) and X.ndim == 4:  # the estimator calling itself
            return super().fit(X, y, **params)
        X = validate_data(self, X, reset=True)
        if y is not None:
            y = np.asarray(y)
        labels = self.candidate_labels if self.names_classes else None
        if self.names_classes and y is not None and y.dtype.kind in "iuf":
            # Set for this fit and restored: parameters must come out as given.
            self.candidate_labels = _class_names(y)
        try:
            super().fit(as_images(X), y, **params)
        finally:
            if self.names_classes:
                self.candidate_labels = labels
        validate_data(self, X, reset=True)  # image rows record no feature count
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.three_d_array = tags.input_tags.string = False
        if tags.transformer_tags is not None:
            # Embeddings are float32 whatever the input's dtype.
            tags.transformer_tags = TransformerTags(preserves_dtype=["float32"])
        return tags


def _adapted_method(estimator_class, name):
    @functools.wraps(getattr(estimator_class, name))  # checks read the signature
    def method(self, X, *args, **kwargs):
        parent = getattr(super(type(self), self), name)
        if isinstance(X, np.ndarray) and X.ndim == 4:  # the estimator calling itself
            return parent(X, *args, **kwargs)
        if name == "partial_fit":
            first = not hasattr(self, "n_features_in_")
            X = validate_data(self, X, reset=first)
            parent(as_images(X), *args, **kwargs)
            validate_data(self, X, reset=first)  # image rows record no feature count
            return self
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return parent(as_images(X), *args, **kwargs)

    return method


def adapted(estimator_class, methods, **attributes):
    """A module-level subclass of ``estimator_class`` taking 2-D arrays."""
    name = f"Array{estimator_class.__name__}"
    body = {method: _adapted_method(estimator_class, method) for method in methods}
    body.update(attributes, __module__=__name__, __qualname__=name)
    cls = type(name, (ArrayInput, estimator_class), body)
    globals()[name] = cls  # so that pickle finds it by name
    return cls


CLASSIFIER_METHODS = ["predict", "predict_proba", "predict_log_proba"]
CLASSIFIER_METHODS += ["decision_function", "score"]
ESTIMATORS = [
    adapted(CLIPEmbeddingTransformer, ["transform"])(tiny_model(), dtype="float32"),
    adapted(CLIPZeroShotClassifier, CLASSIFIER_METHODS, names_classes=True)(
        tiny_model(), dtype="float32"
    ),
    adapted(CLIPFewShotClassifier, CLASSIFIER_METHODS, names_classes=True)(
        tiny_model(), dtype="float32", cv=2, random_state=0
    ),
    adapted(CLIPNearestNeighbors, ["partial_fit", "kneighbors", "radius_neighbors"])(
        tiny_model(), dtype="float32"
    ),
    adapted(CLIPContrastiveFinetuner, ["transform", "score"])(
        tiny_model(),
        dtype="float32",
        max_epochs=1,
        batch_size=8,
        caption_template="a photo of class {}.",
        validation_fraction=None,
        random_state=0,
    ),
]

# The checks that cannot hold for an image model, with the reason.
ROUNDING = (
    "float32 forward passes: outputs of the same rows in another order or "
    "another batch agree to about 1e-7 (tests/test_sklearn_compat.py checks "
    "1e-6), not to the 1e-9 this check asks of float64 estimators"
)
EXPECTED_FAILURES = {
    "ArrayCLIPEmbeddingTransformer": {
        "check_methods_sample_order_invariance": ROUNDING,
    },
    "ArrayCLIPZeroShotClassifier": {
        "check_methods_sample_order_invariance": ROUNDING,
        "check_methods_subset_invariance": ROUNDING,
    },
    "ArrayCLIPFewShotClassifier": {
        "check_methods_sample_order_invariance": ROUNDING,
        "check_methods_subset_invariance": ROUNDING,
        "check_non_transformer_estimators_n_iter": (
            "max_iter bounds the linear head's L-BFGS in every fit of the "
            "cross-validated grid, so no single n_iter_ describes a fit"
        ),
    },
    "ArrayCLIPContrastiveFinetuner": {
        "check_methods_sample_order_invariance": ROUNDING,
        "check_estimators_pickle": (
            "an unpickled fine-tuner mixes its tuned and starting weights "
            "again (WiSE-FT), which rounds float32 weights differently: "
            "outputs agree to about 1e-7, not 1e-9"
        ),
    },
}


def expected_failures(estimator):
    return EXPECTED_FAILURES.get(type(estimator).__name__, {})


@parametrize_with_checks(ESTIMATORS[:-1], expected_failed_checks=expected_failures)
def test_sklearn_check(estimator, check):
    check(estimator)


# The fine-tuner trains an epoch in most checks: these run with the slow ones.
@pytest.mark.slow
@parametrize_with_checks(ESTIMATORS[-1:], expected_failed_checks=expected_failures)
def test_sklearn_check_of_the_finetuner(estimator, check):
    check(estimator)


def test_every_estimator_runs_most_of_scikit_learn_checks():
    for estimator in ESTIMATORS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            checks = list(estimator_checks_generator(estimator))
        expected = expected_failures(estimator)
        assert len(checks) - len(expected) >= 30, type(estimator).__name__
