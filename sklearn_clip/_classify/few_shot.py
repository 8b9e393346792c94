"""CLIPFewShotClassifier: start from the prompts, learn from a few labelled images."""

from functools import partial
from numbers import Integral, Real

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_consistent_length, column_or_1d
from threadpoolctl import threadpool_limits

from sklearn_clip._backends.interface import DEFAULT_MODEL
from sklearn_clip._base import (
    ENCODING_PARAMETER_CONSTRAINTS,
    CLIPEstimatorBase,
    fill_doc,
)
from sklearn_clip._classify.classifier import (
    FrameLabelsMixin,
    LogitClassifierMixin,
    fit_text_head,
)
from sklearn_clip._classify.few_shot_methods import (
    METHODS,
    ZERO_SHOT,
    check_regularization,
    fall_back_setting,
    head_from_0_1_0,
)
from sklearn_clip._classify.heads import (
    best_candidate,
    cross_validate_grid,
    cross_validation_folds,
    zero_shot_logits,
)
from sklearn_clip._classify.weights import check_weights


@fill_doc
class CLIPFewShotClassifier(
    FrameLabelsMixin, LogitClassifierMixin, ClassifierMixin, CLIPEstimatorBase
):
    """A zero-shot classifier that learns from a few labelled images.

    It starts from the zero-shot classifier (class-name prompts, see
    :class:`CLIPZeroShotClassifier`) and adapts it to the labelled images,
    never much further than cross-validation says they justify. So with no
    images it *is* the zero-shot classifier, with one or two per class it
    stays close to it, and where the images say more than the prompts it
    becomes a tuned linear probe (``prompt_weight=0``). Image embeddings are
    computed once per ``fit`` (and read from ``cache_dir`` when given) and
    reused across the cross-validation.

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
        - ``"linear"``: ``prompt_weight`` times the zero-shot logits plus a
          linear head on the unit-length image embeddings, trained by
          weighted cross-entropy plus ``regularization / 2`` times the
          squared norm of the head, in logit units. At ``prompt_weight=1`` it
          is CLAP's head: it starts at the zero-shot classifier and is pulled
          back towards it. At ``prompt_weight=0`` it is a plain linear probe
          with per-class biases, exactly ``LogisticRegression(C=1 /
          (regularization * sum of weights))`` on the embeddings.
        - ``"tip"``: Tip-Adapter's training-free cache: ``prompt_weight``
          times the zero-shot logits plus ``alpha * logit_scale_`` times,
          per class, the (weighted) sum of ``exp(-beta * (1 - cosine))``
          over that class's labelled images, ``alpha = 0.01 /
          regularization``.
    regularization : "cv" or float in (0, inf], default="cv"
        The pull towards the prompts, with one meaning for both methods:
        ``inf`` is the zero-shot classifier (with ``prompt_weight=1``),
        smaller values let the labelled images move the head further.
        ``"cv"`` chooses it (and for ``"tip"`` also ``beta``) by stratified
        cross-validation on the labelled images, repeated when they are few:
        best mean accuracy, ties to the lower log loss, then to the value
        nearer zero-shot. A float fixes it (``"tip"`` then uses
        ``beta=5.5``). Tip-Adapter's former ``(alpha, beta)`` pair of finite
        numbers is still accepted with ``method="tip"``.
    prompt_weight : "cv" or float in [0, 1], default="cv"
        How much of the zero-shot logits the head keeps: 1 starts from the
        prompts, 0 learns from the labelled images alone (a plain probe).
        ``"cv"`` tries both ends along with ``regularization``, so the head
        becomes a tuned probe when that wins the cross-validation.
        If a class has a single labelled image, ``"cv"`` cannot split it:
        the fit then warns (:class:`~sklearn_clip.exceptions.FewShotWarning`)
        and uses ``regularization=1.0`` and ``prompt_weight=1.0`` for the
        values left to ``"cv"``, and ``cv_results_`` is None.
        With no labelled images at all the head is the zero-shot classifier.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the training loss, as in scikit-learn's
        linear models: ``"balanced"`` weighs each class inversely to its
        number of images; they multiply ``sample_weight``. Weights must be
        finite and non-negative, and not all zero (``fit`` names the class).
    cv : int, default=5
        Folds for the cross-validation; fewer when the rarest class has
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
    {video}

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
    coef_, intercept_ : ndarray of shape (n_classes, embedding_dim), (n_classes,)
        ``method="linear"``: the logits as one linear model on the
        embeddings (``prompt_weight_ * logit_scale_ * class_embeddings_``
        plus the learned part; plus ``logit_bias_`` for SigLIP-style models).
    cache_embeddings_, cache_labels_, cache_weights_ : ndarray
        ``method="tip"``: the labelled embeddings, their class indices and
        their weights (a weight of 2 counts like the image twice).
    regularization_, prompt_weight_ : float
        The values used (chosen or given).
    beta_ : float
        ``method="tip"``: Tip-Adapter's sharpness used.
    cv_results_ : dict or None
        With a ``"cv"`` setting: ``params`` (one dict per candidate),
        ``mean_test_accuracy``, ``std_test_accuracy``, ``mean_test_log_loss``
        and ``split<k>_test_accuracy``; None when nothing was chosen or the
        fit fell back.
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
    The linear head follows CLAP (Silva-Rodriguez et al., 2024), with a
    probe's end (LP++, Huang et al., 2024, blends the two similarly) and
    Tip-Adapter follows Zhang et al. (2022), with its ``alpha`` divided by
    CLIP's logit scale of 100 so that one grid suits every model.

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
    >>> sorted(clf.cv_results_["params"][0])
    ['prompt_weight', 'regularization']
    """

    _parameter_constraints = {
        **CLIPEstimatorBase._parameter_constraints,
        "candidate_labels": ["array-like", dict, None],
        "templates": [str, list, tuple, None],
        "label_descriptions": [dict, None],
        "method": [StrOptions(set(METHODS))],
        "regularization": [
            StrOptions({"cv"}),
            Interval(Real, 0, np.inf, closed="right"),
            tuple,
        ],
        "prompt_weight": [StrOptions({"cv"}), Interval(Real, 0, 1, closed="both")],
        "class_weight": [StrOptions({"balanced"}), dict, None],
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
        prompt_weight="cv",
        class_weight=None,
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
        video=None,
    ):
        self.model = model
        self.candidate_labels = candidate_labels
        self.templates = templates
        self.label_descriptions = label_descriptions
        self.method = method
        self.regularization = regularization
        self.prompt_weight = prompt_weight
        self.class_weight = class_weight
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
        self.video = video

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None, sample_weight=None):
        """Embed the prompts, then adapt to the labelled images.

        Parameters
        ----------
        X : list, ndarray, Series, one-column DataFrame or None, default=None
            Labelled images; None fits the zero-shot classifier (``y`` then
            only lists labels).
        y : array-like of shape (n_samples,), default=None
            Labels of ``X``; must be among ``candidate_labels`` when given.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the labelled images, in the training loss and in the
            cross-validation scores (multiplied by ``class_weight``'s).

        Returns
        -------
        self : CLIPFewShotClassifier
            The fitted classifier.
        """
        check_regularization(self.method, self.regularization)
        if X is None:
            self._forget_columns()
            fit_text_head(self, y, label_list=True)
            embeddings, targets = np.empty((0, self.embedding_dim_)), np.empty(0, int)
            weights = np.empty(0)
        else:
            rows, index = self._validate_rows(X, kind="image", reset=True)
            # An (n, 1) column as scikit-learn takes it; None: "y should be 1d".
            y = column_or_1d(y, warn=True)
            check_consistent_length(rows, y)
            fit_text_head(self, y, label_list=False)
            # Checked before any image is encoded: a bad weight fails at once.
            weights = check_weights(
                sample_weight,
                len(rows),
                y=y,
                class_weight=self.class_weight,
                classes=self.classes_,
                index=index,
            )
            embeddings, errors = self._encode_rows(X, modality="image")
            if self.on_error == "nan":
                self.input_errors_ = errors
            embeddings = embeddings.astype(np.float64)
            targets = np.searchsorted(self.classes_, np.asarray(y))
            kept = ~np.isnan(embeddings).any(axis=1) & (weights > 0)
            embeddings, targets = embeddings[kept], targets[kept]
            weights = weights[kept]
        base = self._zero_shot(embeddings)
        head = METHODS[self.method](self.logit_scale_, max_iter=self.max_iter)
        # The head's matrices are small: one BLAS thread is fastest, and many
        # threads on a shared machine are much slower.
        with threadpool_limits(limits=1, user_api="blas"):
            setting, self.cv_results_ = self._choose(
                head, embeddings, targets, base, weights
            )
            head.fit(embeddings, targets, base, weights, setting)
        self._set_head(head, setting)
        return self

    def _zero_shot(self, embeddings):
        return zero_shot_logits(
            embeddings, self.class_embeddings_, self.logit_scale_, self.logit_bias_
        )

    def _choose(self, head, embeddings, targets, base, weights):
        """The setting to use and the cross-validation results (or None)."""
        grid = head.grid(self.regularization, self.prompt_weight)
        if len(targets) == 0:  # nothing to learn from: the zero-shot end
            return {**grid[0], **ZERO_SHOT}, None
        if len(grid) == 1:
            return grid[0], None
        counts = np.bincount(targets)
        smallest = counts[counts > 0].min()
        if smallest < 2:
            params = self.get_params(deep=False)
            return fall_back_setting(grid, counts, self.classes_, params), None
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        folds = cross_validation_folds(
            int(min(self.cv, smallest)), len(targets), random_state=seed
        )
        predict = partial(head.fold_logits, embeddings, targets, base, weights)
        losses, accuracies = cross_validate_grid(
            embeddings, targets, weights, grid, predict, folds=folds
        )
        results = {
            "params": grid,
            "mean_test_accuracy": accuracies.mean(axis=1),
            "std_test_accuracy": accuracies.std(axis=1),
            "mean_test_log_loss": losses.mean(axis=1),
        }
        for split in range(accuracies.shape[1]):
            results[f"split{split}_test_accuracy"] = accuracies[:, split]
        return grid[best_candidate(losses, accuracies)], results

    def _set_head(self, head, setting):
        for name in ("coef_", "intercept_", *_CACHE_ATTRIBUTES, "beta_"):
            self.__dict__.pop(name, None)
        self._head = head  # the method's object: turns embeddings into logits
        self.regularization_ = setting["regularization"]
        self.prompt_weight_ = setting["prompt_weight"]
        if "beta" in setting:
            self.beta_ = setting["beta"]
        for name, value in head.fitted_attributes(self.class_embeddings_).items():
            setattr(self, name, value)

    def _logits(self, X):
        return self._embedding_logits(self._encode(X, modality="image"))

    def _embedding_logits(self, embeddings):
        embeddings = np.asarray(embeddings, dtype=np.float64)
        return self._head.logits(embeddings, self._zero_shot(embeddings))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self.candidate_labels is None
        tags.classifier_tags.multi_label = False
        tags.classifier_tags.poor_score = True
        return tags

    def __sklearn_is_fitted__(self):
        return hasattr(self, "regularization_")

    def __setstate__(self, state):
        # A 0.1.0 pickle: its head as coef_ or a cache, fewer parameters.
        head = head_from_0_1_0(state) if "_head" not in state else None
        super().__setstate__(state)
        if head is not None:
            self._set_head(*head)


_CACHE_ATTRIBUTES = ("cache_embeddings_", "cache_labels_", "cache_weights_")
