"""The two output modes of the zero-shot classifier, as strategy objects.

``multi_label=False`` (:class:`SingleLabel`): a softmax over the classes and
the most likely class. ``multi_label=True`` (:class:`MultiLabel`): each label
on its own, a sigmoid and a threshold each. The estimator picks one of them
and calls it; it holds no other branch on the mode.
"""

import numpy as np
from scipy.special import expit, log_expit
from sklearn.utils.validation import check_consistent_length, check_is_fitted

from sklearn_clip._classify.classifier import LogitClassifierMixin, fit_text_head
from sklearn_clip._classify.heads import zero_shot_logits
from sklearn_clip._classify.multilabel import (
    BACKGROUND_PROMPTS,
    f1_thresholds,
    indicator_targets,
    label_logits,
)
from sklearn_clip._classify.prompts import class_embeddings
from sklearn_clip._classify.weights import check_weights
from sklearn_clip._encoding.cache import make_cache


class SingleLabel:
    """The outputs of a zero-shot classifier with one label per image.

    A softmax over the classes and the most likely class, as every
    :class:`~sklearn_clip._classify.classifier.LogitClassifierMixin`.
    """

    def fit(self, estimator, X, rows, y):
        if rows is not None and y is not None:
            check_consistent_length(rows, y)
        fit_text_head(estimator, y, label_list=X is None)

    def logits(self, estimator, embeddings):
        return estimator._class_logits(embeddings)

    def decision_function(self, estimator, X):
        return LogitClassifierMixin.decision_function(estimator, X)

    def predict_proba(self, estimator, X):
        return LogitClassifierMixin.predict_proba(estimator, X)

    def predict_log_proba(self, estimator, X):
        return LogitClassifierMixin.predict_log_proba(estimator, X)

    def predict(self, estimator, X):
        return LogitClassifierMixin.predict(estimator, X)

    def score(self, estimator, X, y, sample_weight=None):
        return LogitClassifierMixin.score(estimator, X, y, sample_weight)


class MultiLabel:
    """The outputs of a zero-shot classifier with ``multi_label=True``.

    Each label is scored on its own: a sigmoid of its logit (against the
    background prompts for CLIP), and a threshold per label, set by F1 when
    ``fit`` is given labelled images, else 0.5.
    """

    def fit(self, estimator, X, rows, y):
        Y = None
        if rows is not None and y is not None:
            classes, Y = indicator_targets(y, estimator.candidate_labels, len(rows))
            handle = fit_text_head(estimator, None, label_list=False, classes=classes)
        else:
            handle = fit_text_head(estimator, y, label_list=X is None)
        if not handle.is_sigmoid:
            prompts = estimator.background_prompts or BACKGROUND_PROMPTS
            estimator.background_embeddings_ = class_embeddings(
                handle,
                [[prompt] for prompt in prompts],
                batch_size=estimator.batch_size,
                cache=make_cache(estimator.cache_dir, estimator.cache_dtype),
            )
        estimator.thresholds_ = np.full(len(estimator.classes_), 0.5)
        if Y is not None:
            embeddings, errors = estimator._encode_rows(X, modality="image")
            if estimator.on_error == "nan":
                estimator.input_errors_ = errors
            # What predict_proba(X) gives, from the embeddings just computed.
            probabilities = expit(self.logits(estimator, embeddings))
            readable = ~np.isnan(probabilities).any(axis=1)
            estimator.thresholds_ = f1_thresholds(Y[readable], probabilities[readable])

    def logits(self, estimator, embeddings):
        logits = estimator._class_logits(embeddings)
        if estimator.logit_bias_ is not None:  # sigmoid-trained: already per label
            return logits
        background = zero_shot_logits(
            embeddings, estimator.background_embeddings_, estimator.logit_scale_, None
        )
        return label_logits(logits, background)

    def decision_function(self, estimator, X):
        check_is_fitted(estimator)
        return estimator._logits(X)

    def predict_proba(self, estimator, X):
        return expit(self.decision_function(estimator, X))

    def predict_log_proba(self, estimator, X):
        return log_expit(self.decision_function(estimator, X))

    def predict(self, estimator, X):
        probabilities = self.predict_proba(estimator, X)
        labels = (probabilities >= estimator.thresholds_).astype(int)
        failed = np.isnan(probabilities).any(axis=1)
        if failed.any():
            labels = labels.astype(float)
            labels[failed] = np.nan
        return labels

    def score(self, estimator, X, y, sample_weight=None):
        _, Y = indicator_targets(y, estimator.classes_, len(y))
        if sample_weight is not None:
            sample_weight = check_weights(sample_weight, len(Y))
        correct = (self.predict(estimator, X) == Y).all(axis=1)
        return float(np.average(correct, weights=sample_weight))


# multi_label -> its output mode (the strategies hold no state: one of each).
OUTPUT_MODES = {False: SingleLabel(), True: MultiLabel()}
