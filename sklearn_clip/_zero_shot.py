"""CLIPZeroShotClassifier: classify images from class names, without training."""

import numpy as np
from scipy.special import expit, log_softmax, softmax
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.metrics import accuracy_score
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
)

from sklearn_clip._base import (
    ENCODING_PARAMETER_CONSTRAINTS,
    CLIPEstimatorBase,
    fill_doc,
)
from sklearn_clip._cache import make_cache
from sklearn_clip._model import DEFAULT_MODEL
from sklearn_clip._prompts import (
    class_embeddings,
    class_prompts,
    label_space,
    prompt_names,
    resolve_templates,
)


@fill_doc
class CLIPZeroShotClassifier(ClassifierMixin, CLIPEstimatorBase):
    """Classify images by their similarity to class-name prompts (zero-shot CLIP).

    Each class becomes one or more sentences ("a photo of a {class}.") whose
    text embeddings are averaged into one class embedding, once, in ``fit``.
    An image's score for a class is the model's logit scale times the cosine
    similarity of their embeddings (plus the learned bias for SigLIP-style
    models), exactly the logits the model was trained with. Nothing is learned
    from the training images: ``fit`` only fixes the label space and the
    prompts, so the classifier can be cross-validated, searched over templates
    and calibrated like any other.

    Parameters
    ----------
    {model}
    candidate_labels : array-like or dict, default=None
        The label space. A list of string labels, or a dict
        ``{label: class name}`` for labels that are not the text to prompt
        with (codes, integers). None takes the labels from ``y``. When given,
        ``y`` (if any) must only hold these labels; set it to the full label
        space under cross-validation so a class missing from a training fold
        can still be predicted.
    templates : str, list of str or None, default="simple"
        How a class name becomes prompts; each template has one ``{}`` where
        the name goes, and a class's prompts are ensembled (the mean of their
        unit-length embeddings, renormalised). A built-in set:

        - ``"simple"``: ``"a photo of a {}."``;
        - ``"openai_imagenet"``: the 80 ImageNet templates published with CLIP;
        - ``"openai_imagenet_7"``: the 7 of them chosen in the CLIP
          prompt-engineering notebook;

        or one template such as ``"This is a photo of {}."``, or a list of
        templates. None uses ``label_descriptions`` only.
    label_descriptions : dict, default=None
        ``{label: sentence or list of sentences}`` used as extra prompts for
        that class, unchanged (e.g. "a photo of a tabby, a cat with a striped
        coat"). They are ensembled with the templated prompts.
    {batch_size}
    {device}
    {dtype}
    {revision}
    {on_error}
    {store_weights_in_pickle}
    {progress}
    {cache_dir}
        Both the class prompts (in ``fit``) and the images are cached.
    {cache_dtype}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The sorted labels.
    class_embeddings_ : ndarray of shape (n_classes, embedding_dim)
        Unit-length float32 text embedding of each class, rows as ``classes_``.
    logit_scale_ : float
        The model's learned temperature, ``exp(logit_scale)``.
    logit_bias_ : float or None
        The learned bias of SigLIP-style models; None for CLIP.
    embedding_dim_ : int
        Size of the embeddings.
    n_features_in_ : int
        1; only set when ``fit`` was given a one-column DataFrame.
    feature_names_in_ : ndarray of shape (1,)
        The column name; only set when ``fit`` was given a DataFrame.
    input_errors_ : list of dict
        Under ``on_error="nan"``, the rows the last prediction could not read:
        ``position``, ``index`` (pandas label, or the position), ``source``
        (path or description), ``error`` (exception type) and ``message``.

    See Also
    --------
    CLIPEmbeddingTransformer : Image embeddings for a linear probe.
    sklearn.linear_model.LogisticRegression : The usual linear probe.
    sklearn.neighbors.NearestCentroid : Classification by similarity to class
        centroids, learned from data instead of from text.

    Notes
    -----
    ``predict_proba`` is the softmax of the logits over the candidate labels,
    as CLIP was trained; rows sum to 1. SigLIP-style models were trained with
    a sigmoid per label instead: :meth:`predict_sigmoid` gives those
    independent scores (what the ``transformers`` pipeline reports for them).

    ``decision_function`` follows scikit-learn: for two classes it is 1-D, the
    difference of the two logits, positive for ``classes_[1]``.

    Under ``on_error="nan"``, a row whose image cannot be read gets NaN scores
    and probabilities, and ``predict`` gives it None (the result then has
    dtype object); ``score`` counts such rows as wrong.

    With ``cross_val_predict(method="predict_proba")`` scikit-learn replaces
    the labels in ``y`` by 0..k-1 before ``fit``; labels that are not strings
    and have no name in ``candidate_labels`` raise an error rather than
    prompting with "0", "1", ... For ``neg_log_loss`` on folds missing a class,
    use ``make_scorer(log_loss, response_method="predict_proba",
    greater_is_better=False, labels=all_labels)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip import CLIPZeroShotClassifier
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> clf = CLIPZeroShotClassifier(
    ...     make_tiny_clip(), candidate_labels=["dog", "cat", "bird"]
    ... ).fit()
    >>> clf.classes_
    array(['bird', 'cat', 'dog'], dtype='<U4')
    >>> images = np.zeros((2, 30, 30, 3), dtype=np.uint8)
    >>> clf.predict_proba(images).shape
    (2, 3)
    >>> clf.predict(images).shape
    (2,)
    >>> binary = CLIPZeroShotClassifier(make_tiny_clip(), templates="openai_imagenet_7")
    >>> binary.fit(None, ["cat", "dog", "cat"]).decision_function(images).shape
    (2,)
    """

    _parameter_constraints = {
        **CLIPEstimatorBase._parameter_constraints,
        "candidate_labels": ["array-like", dict, None],
        "templates": [str, list, tuple, None],
        "label_descriptions": [dict, None],
        **ENCODING_PARAMETER_CONSTRAINTS,
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        candidate_labels=None,
        templates="simple",
        label_descriptions=None,
        batch_size=32,
        device="auto",
        dtype="auto",
        revision=None,
        on_error="raise",
        store_weights_in_pickle=False,
        progress=False,
        cache_dir=None,
        cache_dtype="float32",
    ):
        self.model = model
        self.candidate_labels = candidate_labels
        self.templates = templates
        self.label_descriptions = label_descriptions
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.revision = revision
        self.on_error = on_error
        self.store_weights_in_pickle = store_weights_in_pickle
        self.progress = progress
        self.cache_dir = cache_dir
        self.cache_dtype = cache_dtype

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Fix the label space and embed each class's prompts.

        Parameters
        ----------
        X : list, ndarray, Series, one-column DataFrame or None, default=None
            Images; only checked (their length against ``y``), never encoded:
            a zero-shot classifier learns nothing from them.
        y : array-like of shape (n_samples,), default=None
            Labels. Gives the label space when ``candidate_labels`` is None;
            otherwise it must be a subset of ``candidate_labels``. With
            ``X=None`` it may simply list the labels.

        Returns
        -------
        self : CLIPZeroShotClassifier
            The fitted classifier.
        """
        if X is None:
            for name in ("n_features_in_", "feature_names_in_"):
                self.__dict__.pop(name, None)
        else:
            rows, _ = self._validate_rows(X, kind="image", reset=True)
            if y is not None:
                check_consistent_length(rows, y)
        classes, names = label_space(self.candidate_labels, y, label_list=X is None)
        prompts = class_prompts(
            classes,
            resolve_templates(self.templates),
            prompt_names(classes, names, self.templates),
            self.label_descriptions,
        )
        handle = self._get_model(reset=True)
        self.class_embeddings_ = class_embeddings(
            handle,
            prompts,
            batch_size=self.batch_size,
            cache=make_cache(self.cache_dir, self.cache_dtype),
        )
        self.classes_ = classes
        self.logit_scale_ = handle.logit_scale
        self.logit_bias_ = handle.logit_bias
        self.embedding_dim_ = handle.embedding_dim
        self.__dict__.pop("input_errors_", None)
        return self

    def decision_function(self, X):
        """Scaled image-text logits: ``logit_scale_ * cosine (+ logit_bias_)``.

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

    def predict_sigmoid(self, X):
        """Independent per-class probabilities ``sigmoid(logits)`` (SigLIP-style).

        SigLIP was trained to score each image-text pair on its own, so these
        need not sum to 1 across classes: an image can match several labels, or
        none. Only for models with a learned logit bias.

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
        if self.logit_bias_ is None:
            raise ValueError(
                "predict_sigmoid needs a SigLIP-style model (with a learned logit "
                "bias); this model was trained with a softmax over texts: use "
                "predict_proba"
            )
        return expit(self._logits(X))

    def predict(self, X):
        """The most similar class of each image.

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
        y_pred = self.predict(X)
        failed = np.array([label is None for label in y_pred], dtype=bool)
        if not failed.any():
            return accuracy_score(y, y_pred, sample_weight=sample_weight)
        y = column_or_1d(y)
        check_consistent_length(y, y_pred, sample_weight)
        correct = ~failed & (y_pred == y)
        return float(np.average(correct, weights=sample_weight))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self.candidate_labels is None
        tags.classifier_tags.multi_label = False
        # Zero-shot on the checks' random data scores near chance by design.
        tags.classifier_tags.poor_score = True
        return tags

    def _logits(self, X):
        embeddings = self._encode(X, modality="image")
        return _scaled_logits(
            embeddings, self.class_embeddings_, self.logit_scale_, self.logit_bias_
        )


def _scaled_logits(image_embeddings, class_embeddings, scale, bias):
    """The model's own logits from unit-length embeddings, in float64."""
    cosine = image_embeddings.astype(np.float64) @ class_embeddings.T.astype(np.float64)
    logits = scale * cosine
    return logits if bias is None else logits + bias
