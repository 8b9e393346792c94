"""CLIPZeroShotClassifier: classify images from class names, without training."""

from scipy.special import expit
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from sklearn_clip._backends.interface import DEFAULT_MODEL
from sklearn_clip._base import (
    ENCODING_PARAMETER_CONSTRAINTS,
    CLIPEstimatorBase,
    fill_doc,
)
from sklearn_clip._classify.classifier import (
    FrameLabelsMixin,
    LogitClassifierMixin,
)
from sklearn_clip._classify.heads import zero_shot_logits
from sklearn_clip._classify.outputs import OUTPUT_MODES


@fill_doc
class CLIPZeroShotClassifier(
    FrameLabelsMixin, LogitClassifierMixin, ClassifierMixin, CLIPEstimatorBase
):
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
        - each name with ``_de``, ``_fr``, ``_es``, ``_zh`` or ``_ja``: its
          translation, for labels in that language (bare nouns);

        or one template such as ``"This is a photo of {}."``, or a list of
        templates. None uses ``label_descriptions`` only.
    label_descriptions : dict, default=None
        ``{label: sentence or list of sentences}`` used as extra prompts for
        that class, unchanged (e.g. "a photo of a tabby, a cat with a striped
        coat"). They are ensembled with the templated prompts.
    multi_label : bool, default=False
        Score each label on its own, for images that may show several labels
        or none: ``y`` is then a 0/1 indicator matrix (one column per label,
        in sorted order, as from
        :class:`~sklearn.preprocessing.MultiLabelBinarizer`) or one list of
        labels per image, ``predict`` returns an indicator matrix and
        ``predict_proba`` independent per-label probabilities (see Notes).
        When ``fit`` gets labelled images it picks, per label, the
        probability threshold that maximises F1 on them (``thresholds_``);
        otherwise every threshold is 0.5.
    background_prompts : list of str, default=None
        With ``multi_label=True`` and a CLIP (softmax) model, what each label's
        prompt competes against: sentences that describe no label in
        particular. None uses ``("a photo.", "a photo of something.", "an
        image.")``; pick sentences in the style of your prompts. Unused by
        SigLIP-style models, whose sigmoid scores labels independently.
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
    {n_jobs}
    {video}

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
    thresholds_ : ndarray of shape (n_classes,)
        ``multi_label=True`` only: the probability at or above which
        ``predict`` gives a label.
    background_embeddings_ : ndarray of shape (n_backgrounds, embedding_dim)
        ``multi_label=True`` with a CLIP model only: the background prompts.
    input_errors_ : list of dict
        ``multi_label=True`` with images and labels given to ``fit``, under
        ``on_error="nan"`` only: the images ``fit`` could not read (and left
        out of the thresholds): ``position``, ``index`` (pandas label, or the
        position), ``source`` (path or description), ``error`` (exception
        type) and ``message``. Predictions record nothing: their
        :class:`~sklearn_clip.exceptions.InputErrorWarning` lists the rows.

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

    With ``multi_label=True``, a label's probability is ``sigmoid(logit)``
    for SigLIP-style models and, for CLIP, the softmax of its logit among the
    background prompts' logits, ``sigmoid(logit - logsumexp(background))``;
    ``decision_function`` gives the argument of that sigmoid, always 2-D.

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
    >>> tags = CLIPZeroShotClassifier(
    ...     make_tiny_clip(), candidate_labels=["dog", "cat", "bird"], multi_label=True
    ... ).fit(images, [["dog", "cat"], []])
    >>> tags.predict(images).shape, tags.thresholds_.shape
    ((2, 3), (3,))
    >>> binary = CLIPZeroShotClassifier(make_tiny_clip(), templates="openai_imagenet_7")
    >>> binary.fit(None, ["cat", "dog", "cat"]).decision_function(images).shape
    (2,)
    """

    _parameter_constraints = {
        **CLIPEstimatorBase._parameter_constraints,
        "candidate_labels": ["array-like", dict, None],
        "templates": [str, list, tuple, None],
        "label_descriptions": [dict, None],
        "multi_label": ["boolean"],
        "background_prompts": [list, tuple, None],
        **ENCODING_PARAMETER_CONSTRAINTS,
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        candidate_labels=None,
        templates="simple",
        label_descriptions=None,
        multi_label=False,
        background_prompts=None,
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
        self.multi_label = multi_label
        self.background_prompts = background_prompts
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
    def fit(self, X=None, y=None):
        """Fix the label space and embed each class's prompts.

        Parameters
        ----------
        X : list, ndarray, Series, one-column DataFrame or None, default=None
            Images. Only checked (their length against ``y``), never encoded,
            except with ``multi_label=True`` and a ``y``: then they set the
            per-label thresholds.
        y : array-like, default=None
            Labels, of shape (n_samples,). Gives the label space when
            ``candidate_labels`` is None; otherwise it must be a subset of
            ``candidate_labels``. With ``X=None`` it may simply list the
            labels. With ``multi_label=True`` and images: a 0/1 indicator
            matrix of shape (n_samples, n_classes) or one list of labels per
            image.

        Returns
        -------
        self : CLIPZeroShotClassifier
            The fitted classifier.
        """
        rows = None
        if X is None:
            self._forget_columns()
        else:
            rows, _ = self._validate_rows(X, kind="image", reset=True)
        self.__dict__.pop("thresholds_", None)
        self.__dict__.pop("background_embeddings_", None)
        self._outputs.fit(self, X, rows, y)
        return self

    @property
    def _outputs(self):
        return OUTPUT_MODES[bool(self.multi_label)]

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
            ``logit[:, 1] - logit[:, 0]``, positive for ``classes_[1]``. With
            ``multi_label=True``, always 2-D: each label's logit against the
            background prompts (CLIP) or the raw logit (SigLIP-style), the
            argument of :meth:`predict_proba`'s sigmoid.
        """
        return self._outputs.decision_function(self, X)

    def predict_proba(self, X):
        """Softmax of the logits over the classes (per-label with ``multi_label``).

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Images.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns as ``classes_``; rows sum to 1, except with
            ``multi_label=True``, where each entry is one label's probability.
        """
        return self._outputs.predict_proba(self, X)

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
        return self._outputs.predict_log_proba(self, X)

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
        return expit(self._class_logits(self._encode(X, modality="image")))

    def predict(self, X):
        """The most similar class of each image (the labels, with ``multi_label``).

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Images.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
            Labels from ``classes_``; None for unreadable rows under
            ``on_error="nan"``. With ``multi_label=True``, a 0/1 indicator
            matrix (columns as ``classes_``), or float with NaN rows for
            unreadable images.
        """
        return self._outputs.predict(self, X)

    def score(self, X, y, sample_weight=None):
        """Accuracy of :meth:`predict` (subset accuracy with ``multi_label``).

        Unreadable rows count as wrong.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Images.
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            True labels (an indicator matrix with ``multi_label=True``).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        float
            The (weighted) fraction of correct predictions.
        """
        return self._outputs.score(self, X, y, sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self.candidate_labels is None
        tags.classifier_tags.multi_label = bool(self.multi_label)
        # Zero-shot on the checks' random data scores near chance by design.
        tags.classifier_tags.poor_score = True
        return tags

    def _class_logits(self, embeddings):
        return zero_shot_logits(
            embeddings, self.class_embeddings_, self.logit_scale_, self.logit_bias_
        )

    def _logits(self, X):
        return self._embedding_logits(self._encode(X, modality="image"))

    def _embedding_logits(self, embeddings):
        return self._outputs.logits(self, embeddings)
