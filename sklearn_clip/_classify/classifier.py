"""What the zero-shot and few-shot classifiers share: the text head and the
methods that turn logits into scikit-learn's outputs.

Both classifiers score an image by logits over ``classes_``; they differ only
in how the logits are made (``_logits``). The label space and the class text
embeddings are settled the same way for both, by :func:`fit_text_head`.
"""

import numpy as np
from scipy.special import expit, log_softmax, softmax
from sklearn.metrics import accuracy_score
from sklearn.utils.validation import (
    _num_samples,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
)

from sklearn_clip._classify.prompts import (
    class_embeddings,
    class_prompts,
    label_space,
    prompt_names,
    resolve_templates,
)
from sklearn_clip._classify.weights import check_weights
from sklearn_clip._encoding.cache import make_cache


def fit_text_head(estimator, y, *, label_list, classes=None):
    """Set ``classes_``, ``class_embeddings_`` and the model's scale and bias.

    ``classes`` (already settled, e.g. by a multi-label ``y``) skips
    :func:`~sklearn_clip._classify.prompts.label_space`. Returns the model handle.
    """
    names = None
    if classes is None:
        classes, names = label_space(
            estimator.candidate_labels, y, label_list=label_list
        )
    elif isinstance(estimator.candidate_labels, dict):
        names = dict(estimator.candidate_labels)
    prompts = class_prompts(
        classes,
        resolve_templates(estimator.templates),
        prompt_names(classes, names, estimator.templates),
        estimator.label_descriptions,
    )
    handle = estimator._get_model(reset=True)
    estimator.class_embeddings_ = class_embeddings(
        handle,
        prompts,
        batch_size=estimator.batch_size,
        cache=make_cache(estimator.cache_dir, estimator.cache_dtype),
    )
    estimator.classes_ = classes
    estimator.logit_scale_ = handle.logit_scale
    estimator.logit_bias_ = handle.logit_bias
    estimator.embedding_dim_ = handle.embedding_dim
    estimator.__dict__.pop("input_errors_", None)
    return handle


class LogitClassifierMixin:
    """``decision_function``, ``predict_proba``, ``predict`` and ``score`` from
    ``self._logits(X)``, logits of shape ``(n_samples, n_classes)``."""

    def decision_function(self, X):
        """The logits of each class.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Images.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
            Columns as ``classes_``; for two classes the 1-D difference
            ``logit[:, 1] - logit[:, 0]``, positive for ``classes_[1]``.
        """
        check_is_fitted(self)
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if len(self.classes_) == 2 else logits

    def predict_proba(self, X):
        """Softmax of the logits over the classes.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Images.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns as ``classes_``; rows sum to 1.
        """
        check_is_fitted(self)
        return softmax(self._logits(X), axis=1)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Images.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns as ``classes_``.
        """
        check_is_fitted(self)
        return log_softmax(self._logits(X), axis=1)

    def predict(self, X):
        """The class with the highest logit for each image.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Images.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``; None for unreadable rows under
            ``on_error="nan"``.
        """
        check_is_fitted(self)
        logits = self._logits(X)
        failed = np.isnan(logits).any(axis=1)
        labels = self.classes_[np.argmax(np.where(failed[:, None], 0, logits), 1)]
        if failed.any():
            labels = labels.astype(object)
            labels[failed] = None
        return labels

    def score(self, X, y, sample_weight=None):
        """Accuracy of :meth:`predict`; unreadable rows count as wrong.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Images.
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        float
            The (weighted) fraction of correct predictions.
        """
        if sample_weight is not None:  # checked before any image is encoded
            sample_weight = check_weights(sample_weight, _num_samples(y))
        y_pred = self.predict(X)
        failed = np.array([label is None for label in y_pred], dtype=bool)
        if not failed.any():
            return accuracy_score(y, y_pred, sample_weight=sample_weight)
        y = column_or_1d(y)
        check_consistent_length(y, y_pred, sample_weight)
        correct = ~failed & (y_pred == y)
        return float(np.average(correct, weights=sample_weight))


class FrameLabelsMixin:
    """``predict_frames``: a label track over each video's sampled frames,
    from ``self._embedding_logits`` of the frames' embeddings."""

    def predict_frames(self, X):
        """The most probable class of each sampled frame: a label track.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Videos (and images, one frame each); see ``video``.

        Returns
        -------
        pandas.DataFrame
            One row per frame, in input order: ``row`` (the input row's index
            label, or its position), ``frame``, ``time`` (seconds; NaN for a
            still image), ``label`` (None for a frame that could not be read)
            and ``proba_<class>`` for each class in ``classes_``: the softmax
            over the classes, or with ``multi_label=True`` each label's own
            probability.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_clip import CLIPZeroShotClassifier
        >>> from sklearn_clip.toy import make_tiny_clip
        >>> clf = CLIPZeroShotClassifier(make_tiny_clip(), candidate_labels=["a", "b"])
        >>> track = clf.fit().predict_frames(np.zeros((2, 30, 30, 3), np.uint8))
        >>> list(track.columns)
        ['row', 'frame', 'time', 'label', 'proba_a', 'proba_b']
        """
        import pandas as pd

        check_is_fitted(self)
        frames = self._encode_frames(X)
        logits = self._embedding_logits(frames["embedding"])
        multi = getattr(self, "multi_label", False)
        proba = expit(logits) if multi else softmax(logits, axis=1)
        failed = np.isnan(proba).any(axis=1)
        labels = self.classes_[np.argmax(np.where(failed[:, None], 0, proba), 1)]
        labels = labels.astype(object)
        labels[failed] = None
        table = pd.DataFrame({k: frames[k] for k in ("row", "frame", "time")})
        table["label"] = labels
        for j, name in enumerate(self.classes_):
            table[f"proba_{name}"] = proba[:, j]
        return table
