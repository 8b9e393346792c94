"""CLIPFewShotClassifier: start from the prompts, learn from a few labelled images."""

import warnings
from functools import partial
from numbers import Integral, Real

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_consistent_length

from sklearn_clip._base import (
    ENCODING_PARAMETER_CONSTRAINTS,
    CLIPEstimatorBase,
    fill_doc,
)
from sklearn_clip._classify.classifier import (
    LogitClassifierMixin,
    fit_text_head,
    forget_columns,
)
from sklearn_clip._classify.heads import (
    LINEAR_GRID,
    TIP_ALPHAS,
    TIP_BETAS,
    best_candidate,
    cross_validate_grid,
    fit_linear_head,
    tip_logits,
    zero_shot_logits,
)
from sklearn_clip._encoding.handle import DEFAULT_MODEL
from sklearn_clip.exceptions import FewShotWarning

METHODS = ("linear", "tip")
# What regularization="cv" falls back to, with a warning, when some class has
# a single example (too few to cross-validate): a pull towards the prompts
# strong enough that one image per class moves the head only a little.
FALLBACK = {"linear": 1.0, "tip": (0.01, 5.5)}


@fill_doc
class CLIPFewShotClassifier(LogitClassifierMixin, ClassifierMixin, CLIPEstimatorBase):
    """A zero-shot classifier that learns from a few labelled images.

    It starts from the zero-shot classifier (class-name prompts, see
    :class:`CLIPZeroShotClassifier`) and adapts it to the labelled images,
    never much further than cross-validation says they justify. So with no
    images it *is* the zero-shot classifier, with one or two per class it
    stays close to it, and with many it approaches a linear probe, without the
    probe's poor start. Image embeddings are computed once per ``fit`` (and
    read from ``cache_dir`` when given) and reused across the cross-validation.

    Parameters
    ----------
    {model}
    candidate_labels : array-like or dict, default=None
        The label space, as in :class:`CLIPZeroShotClassifier`. Classes listed
        here with no labelled image keep their zero-shot (text) weights.
    templates : str, list of str or None, default="simple"
        How a class name becomes prompts, as in :class:`CLIPZeroShotClassifier`.
    label_descriptions : dict, default=None
        Extra prompts per label, as in :class:`CLIPZeroShotClassifier`.
    method : {{"linear", "tip"}}, default="linear"
        - ``"linear"``: a linear head on the unit-length image embeddings,
          initialised from the class text embeddings times the logit scale,
          trained by cross-entropy plus ``regularization / 2`` times the
          squared distance to that start, in logit units (CLAP-style);
        - ``"tip"``: Tip-Adapter's training-free cache: the zero-shot logits
          plus ``alpha * logit_scale_`` times, per class, the sum of
          ``exp(-beta * (1 - cosine))`` over that class's labelled images.
    regularization : "cv", float or (float, float), default="cv"
        ``"cv"`` chooses by stratified ``cv``-fold cross-validation on the
        labelled images (best mean accuracy, ties to the lower log loss, then
        to the value nearer zero-shot): for ``"linear"`` the penalty, from
        ``inf`` (stay at zero-shot) down to ``1e-4`` (close to a plain probe);
        for ``"tip"`` the pair ``(alpha, beta)``. A float fixes the linear
        penalty, a pair fixes Tip-Adapter's ``(alpha, beta)``. If a class has
        a single labelled image, ``"cv"`` cannot split it: the fit then warns
        (:class:`~sklearn_clip.exceptions.FewShotWarning`) and uses a fixed
        value (1.0 for ``"linear"``, ``(0.01, 5.5)`` for ``"tip"``), and says
        so in
        ``cv_results_`` (None).
    cv : int, default=5
        Folds for ``regularization="cv"``; fewer when the rarest class has
        fewer images.
    random_state : int, RandomState instance or None, default=None
        Shuffles the cross-validation folds.
    max_iter : int, default=500
        L-BFGS iterations for the linear head.
    {batch_size}
    {device}
    {dtype}
    {revision}
    {on_error}
        In ``fit``, unreadable images are left out of the training, after
        the warning.
    {store_weights_in_pickle}
    {progress}
    {cache_dir}
    {cache_dtype}
    {n_jobs}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The sorted labels.
    class_embeddings_ : ndarray of shape (n_classes, embedding_dim)
        Unit-length text embedding of each class (the zero-shot weights).
    logit_scale_ : float
        The model's learned temperature.
    logit_bias_ : float or None
        The learned bias of SigLIP-style models; None for CLIP.
    coef_ : ndarray of shape (n_classes, embedding_dim)
        ``method="linear"``: the head's weights; ``logit_scale_ *
        class_embeddings_`` plus the learned correction.
    cache_embeddings_, cache_labels_ : ndarray
        ``method="tip"``: the labelled embeddings and their class indices.
    regularization_ : float or tuple of float
        The penalty (``"linear"``) or ``(alpha, beta)`` (``"tip"``) used.
    cv_results_ : dict or None
        With ``regularization="cv"``: ``params``, ``mean_test_accuracy``,
        ``std_test_accuracy``, ``mean_test_log_loss`` and
        ``split<k>_test_accuracy``, one entry per candidate; None when the
        value was fixed or fell back.
    embedding_dim_ : int
        Size of the embeddings.
    n_features_in_, feature_names_in_
        Only set when ``fit`` was given a one-column DataFrame.
    input_errors_ : list of dict
        Under ``on_error="nan"``, the labelled images that ``fit`` could not
        read (and left out): ``position``, ``index`` (pandas label, or the
        position), ``source`` (path or description), ``error`` (exception
        type) and ``message``. Predictions record nothing: their
        :class:`~sklearn_clip.exceptions.InputErrorWarning` lists the rows.

    See Also
    --------
    CLIPZeroShotClassifier : The classifier this one starts from.
    CLIPEmbeddingTransformer : Embeddings for a plain linear probe.

    Notes
    -----
    The linear head follows CLAP (Silva-Rodriguez et al., 2024) and Tip-Adapter
    follows Zhang et al. (2022), with its ``alpha`` divided by CLIP's logit
    scale of 100 so that one grid suits every model.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip import CLIPFewShotClassifier
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> rng = np.random.default_rng(0)
    >>> images = rng.integers(0, 256, (12, 30, 30, 3), dtype=np.uint8)
    >>> labels = np.repeat(["bird", "cat", "dog"], 4)
    >>> clf = CLIPFewShotClassifier(make_tiny_clip(), cv=2, random_state=0)
    >>> clf.fit(images, labels).predict_proba(images).shape
    (12, 3)
    >>> sorted(clf.cv_results_)[:2]
    ['mean_test_accuracy', 'mean_test_log_loss']
    """

    _parameter_constraints = {
        **CLIPEstimatorBase._parameter_constraints,
        "candidate_labels": ["array-like", dict, None],
        "templates": [str, list, tuple, None],
        "label_descriptions": [dict, None],
        "method": [StrOptions(set(METHODS))],
        "regularization": [
            StrOptions({"cv"}),
            Interval(Real, 0, None, closed="neither"),
            tuple,
        ],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        **ENCODING_PARAMETER_CONSTRAINTS,
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        candidate_labels=None,
        templates="simple",
        label_descriptions=None,
        method="linear",
        regularization="cv",
        cv=5,
        random_state=None,
        max_iter=500,
        batch_size=32,
        device="auto",
        dtype="auto",
        revision=None,
        on_error="raise",
        store_weights_in_pickle=False,
        progress=False,
        cache_dir=None,
        cache_dtype="float32",
        n_jobs=None,
    ):
        self.model = model
        self.candidate_labels = candidate_labels
        self.templates = templates
        self.label_descriptions = label_descriptions
        self.method = method
        self.regularization = regularization
        self.cv = cv
        self.random_state = random_state
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.revision = revision
        self.on_error = on_error
        self.store_weights_in_pickle = store_weights_in_pickle
        self.progress = progress
        self.cache_dir = cache_dir
        self.cache_dtype = cache_dtype
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Embed the prompts, then adapt to the labelled images.

        Parameters
        ----------
        X : list, ndarray, Series, one-column DataFrame or None, default=None
            Labelled images; None fits the zero-shot classifier (``y`` then
            only lists labels).
        y : array-like of shape (n_samples,), default=None
            Labels of ``X``; must be among ``candidate_labels`` when given.

        Returns
        -------
        self : CLIPFewShotClassifier
            The fitted classifier.
        """
        self._check_regularization()
        if X is None:
            forget_columns(self)
            fit_text_head(self, y, label_list=True)
            embeddings, targets = np.empty((0, self.embedding_dim_)), np.empty(0, int)
        else:
            rows, _ = self._validate_rows(X, kind="image", reset=True)
            check_consistent_length(rows, y)
            fit_text_head(self, y, label_list=False)
            embeddings, errors = self._encode_rows(X, modality="image")
            if self.on_error == "nan":
                self.input_errors_ = errors
            embeddings = embeddings.astype(np.float64)
            targets = np.searchsorted(self.classes_, np.asarray(y))
            readable = ~np.isnan(embeddings).any(axis=1)
            embeddings, targets = embeddings[readable], targets[readable]
        base = self._zero_shot(embeddings)
        value, self.cv_results_ = self._choose(embeddings, targets, base)
        self.regularization_ = value
        self._fit_head(embeddings, targets, base, value)
        return self

    def _check_regularization(self):
        value = self.regularization
        if self.method == "tip" and isinstance(value, Real):
            raise ValueError(
                "method='tip' takes regularization='cv' or a pair (alpha, beta), "
                f"not {value!r}"
            )
        if isinstance(value, tuple) and (
            self.method != "tip"
            or len(value) != 2
            or not all(isinstance(v, Real) and v >= 0 for v in value)
        ):
            raise ValueError(
                "a tuple regularization is Tip-Adapter's (alpha, beta), two numbers "
                f">= 0, with method='tip'; got {value!r} with method={self.method!r}"
            )

    def _zero_shot(self, embeddings):
        return zero_shot_logits(
            embeddings, self.class_embeddings_, self.logit_scale_, self.logit_bias_
        )

    def _candidates(self):
        if self.method == "linear":
            return list(LINEAR_GRID)
        return [(a, b) for a in TIP_ALPHAS for b in TIP_BETAS]

    def _choose(self, embeddings, targets, base):
        """The regularization to use and the cross-validation results (or None)."""
        if self.regularization != "cv":
            return self.regularization, None
        if len(targets) == 0:  # nothing to learn from: the zero-shot end
            return self._candidates()[0], None
        counts = np.bincount(targets)
        smallest = counts[counts > 0].min()
        if smallest < 2:
            rare = self.classes_[np.flatnonzero(counts == 1)].tolist()
            warnings.warn(
                f"regularization='cv' needs at least two images of every labelled "
                f"class to cross-validate; {rare[:5]!r} have one. Using the fixed "
                f"regularization={FALLBACK[self.method]!r} instead; pass a value "
                "to silence this warning.",
                FewShotWarning,
                stacklevel=3,
            )
            return FALLBACK[self.method], None
        candidates = self._candidates()
        n_splits = int(min(self.cv, smallest))
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        losses, accuracies = cross_validate_grid(
            embeddings,
            targets,
            base,
            candidates,
            partial(self._fold_predictions, embeddings, targets, base),
            n_splits=n_splits,
            random_state=seed,
        )
        results = {
            "params": candidates,
            "mean_test_accuracy": accuracies.mean(axis=1),
            "std_test_accuracy": accuracies.std(axis=1),
            "mean_test_log_loss": losses.mean(axis=1),
        }
        for fold in range(n_splits):
            results[f"split{fold}_test_accuracy"] = accuracies[:, fold]
        return candidates[best_candidate(losses, accuracies)], results

    def _fold_predictions(self, embeddings, targets, base, train, val, candidates):
        """Validation logits of each candidate, fitted on ``train`` only."""
        if self.method == "tip":
            for alpha, beta in candidates:
                yield tip_logits(
                    embeddings[val],
                    base[val],
                    embeddings[train],
                    targets[train],
                    len(self.classes_),
                    alpha * self.logit_scale_,
                    beta,
                )
            return
        correction = None
        for penalty in candidates:  # strongest first: each warm-starts the next
            correction = fit_linear_head(
                embeddings[train],
                targets[train],
                base[train],
                penalty,
                init=correction,
                max_iter=self.max_iter,
            )
            yield base[val] + embeddings[val] @ correction.T

    def _fit_head(self, embeddings, targets, base, value):
        self.__dict__.pop("coef_", None)
        for name in ("cache_embeddings_", "cache_labels_"):
            self.__dict__.pop(name, None)
        if self.method == "tip":
            self.cache_embeddings_ = embeddings.astype(np.float32)
            self.cache_labels_ = targets
            return
        correction = fit_linear_head(
            embeddings, targets, base, value, max_iter=self.max_iter
        )
        self.coef_ = self.logit_scale_ * self.class_embeddings_ + correction

    def _logits(self, X):
        embeddings = self._encode(X, modality="image")
        base = self._zero_shot(embeddings)
        if self.method == "tip":
            alpha, beta = self.regularization_
            return tip_logits(
                embeddings,
                base,
                self.cache_embeddings_.astype(np.float64),
                self.cache_labels_,
                len(self.classes_),
                alpha * self.logit_scale_,
                beta,
            )
        logits = embeddings.astype(np.float64) @ self.coef_.T
        return logits if self.logit_bias_ is None else logits + self.logit_bias_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self.candidate_labels is None
        tags.classifier_tags.multi_label = False
        tags.classifier_tags.poor_score = True
        return tags

    def __sklearn_is_fitted__(self):
        return hasattr(self, "regularization_")
