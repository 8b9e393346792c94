"""CLIPEmbeddingTransformer: images or texts -> CLIP embeddings as features."""

import numpy as np
from sklearn.base import TransformerMixin, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted

from sklearn_clip._backends.interface import DEFAULT_MODEL
from sklearn_clip._base import (
    ENCODING_PARAMETER_CONSTRAINTS,
    CLIPEstimatorBase,
    fill_doc,
)


@fill_doc
class CLIPEmbeddingTransformer(TransformerMixin, CLIPEstimatorBase):
    """Embed images or texts with a CLIP-family model, one row per input.

    The embeddings are features for any scikit-learn estimator: a linear probe
    (:class:`~sklearn.linear_model.LogisticRegression` on image embeddings) is
    the usual next step after a zero-shot baseline, and in a
    :class:`~sklearn.compose.ColumnTransformer` an image column, a text column
    and numeric columns become one feature matrix.

    ``fit`` learns nothing: it resolves the model (once per process, shared
    with every other estimator using it) and records the embedding size.

    Parameters
    ----------
    {model}
    modality : {"image", "text"}, default="image"
        What the rows are. Images: paths, bytes, PIL images or arrays (HWC
        ``uint8``, HW greyscale, float in [0, 1]), or videos (one row per
        clip, see ``video``). Texts: strings.
    normalize : bool, default=True
        Scale each embedding to unit length, as CLIP compares them (cosine
        similarity). Set False for the raw projected features.
    {batch_size}
    {device}
    {dtype}
    {revision}
    {on_error}
    feature_prefix : str, default=None
        Output features are named ``f"{feature_prefix}_{i}"``. None names them
        after the input column, as skrub's encoders do (``photo_000`` to
        ``photo_511`` for a column ``photo``: the number zero-padded), or
        ``clip_0``, ``clip_1``... when the input has no column name.
    {store_weights_in_pickle}
    {progress}
    {cache_dir}
    {cache_dtype}
    {n_jobs}
    {video}

    Attributes
    ----------
    embedding_dim_ : int
        The number of output features.
    n_features_in_ : int
        1; only set when ``fit`` was given a one-column DataFrame.
    feature_names_in_ : ndarray of shape (1,)
        The column name; only set when ``fit`` was given a DataFrame.
    input_name_ : str or None
        The name of the column ``fit`` was given (a DataFrame's column or a
        named Series, as skrub passes them), which names the output features.

    See Also
    --------
    CLIPZeroShotClassifier : Classify images from class names, without training.
    sklearn.feature_extraction.text.HashingVectorizer : A stateless text encoder.

    Notes
    -----
    Every output keeps every input row, in order; the output is float32 of
    shape ``(n_samples, embedding_dim_)``. A single image must be wrapped in a
    list: an ``(H, W, 3)`` array would be read as ``H`` rows. Empty inputs give
    an empty ``(0, embedding_dim_)`` output.

    The model is not part of the pickle unless ``store_weights_in_pickle=True``;
    a loaded estimator re-resolves it from ``model`` on first use.

    Images are decoded and resized in background threads while the model
    encodes the previous batch, and only a few batches are held at once, so
    memory does not grow with the number of rows. Texts are encoded once per
    distinct text, in batches of similar length; texts the same model encoded
    recently in this process are taken from memory. See
    ``docs/performance.md`` for measurements.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip import CLIPEmbeddingTransformer
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> images = np.zeros((3, 30, 30, 3), dtype=np.uint8)
    >>> embedder = CLIPEmbeddingTransformer(make_tiny_clip()).fit(images)
    >>> embedder.transform(images).shape
    (3, 32)
    >>> embedder.get_feature_names_out()[:3]
    array(['clip_0', 'clip_1', 'clip_2'], dtype=object)
    >>> texts = CLIPEmbeddingTransformer(make_tiny_clip(), modality="text")
    >>> texts.fit_transform(["a red circle", "a blue square"]).dtype
    dtype('float32')
    """

    # skrub's ApplyToCols and TableVectorizer give such a transformer one
    # column at a time (a clone each), which is how it reads its inputs.
    __single_column_transformer__ = True

    _parameter_constraints = {
        **CLIPEstimatorBase._parameter_constraints,
        "modality": [StrOptions({"image", "text"})],
        **ENCODING_PARAMETER_CONSTRAINTS,
        "normalize": ["boolean"],
        "feature_prefix": [str, None],
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        modality="image",
        normalize=True,
        batch_size=32,
        device="auto",
        dtype="auto",
        revision=None,
        on_error="raise",
        feature_prefix=None,
        store_weights_in_pickle=False,
        progress=False,
        cache_dir=None,
        cache_dtype="float32",
        n_jobs=None,
        video=None,
    ):
        self.model = model
        self.modality = modality
        self.normalize = normalize
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.revision = revision
        self.on_error = on_error
        self.feature_prefix = feature_prefix
        self.store_weights_in_pickle = store_weights_in_pickle
        self.progress = progress
        self.cache_dir = cache_dir
        self.cache_dtype = cache_dtype
        self.n_jobs = n_jobs
        self.video = video

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Resolve the model and record the embedding size.

        Parameters
        ----------
        X : list, ndarray, Series, one-column DataFrame or None
            Images or texts; only checked here, not encoded. None loads the
            model alone, as the classifiers' ``fit(None)`` does.
        y : None
            Ignored.

        Returns
        -------
        self : CLIPEmbeddingTransformer
            The fitted transformer.
        """
        if X is None:
            self._forget_columns()
            self.input_name_ = None
        else:
            self._validate_rows(X, kind=self.modality, reset=True)
            self.input_name_ = _column_name(X)
        self.embedding_dim_ = self._get_model(reset=True).embedding_dim
        return self

    def transform(self, X):
        """Embed each row.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Images or texts, as for ``fit``.

        Returns
        -------
        ndarray of shape (n_samples, embedding_dim), dtype float32
            One embedding per row, in order; NaN rows for images that could
            not be read under ``on_error="nan"``, listed in the ``errors`` of
            the :class:`~sklearn_clip.exceptions.InputErrorWarning` it gives.
        """
        check_is_fitted(self)
        return self._encode(X, modality=self.modality, normalize=self.normalize)

    def transform_frames(self, X):
        """Embed each sampled frame of each video: the long table of moments.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Videos (and images, one frame each), as for ``transform``.

        Returns
        -------
        pandas.DataFrame
            One row per frame, in input order: ``row`` (the input row's index
            label, or its position), ``frame`` (its number in the clip),
            ``time`` (seconds from the clip's start; NaN for a still image)
            and the embedding in the columns of :meth:`get_feature_names_out`.
            Under ``on_error="nan"`` a clip that could not be opened has no
            frames and a frame that could not be read is NaN; the
            :class:`~sklearn_clip.exceptions.InputErrorWarning` lists them.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_clip import CLIPEmbeddingTransformer
        >>> from sklearn_clip.toy import make_tiny_clip
        >>> images = np.zeros((2, 30, 30, 3), dtype=np.uint8)
        >>> embedder = CLIPEmbeddingTransformer(make_tiny_clip()).fit(images)
        >>> embedder.transform_frames(images).iloc[:, :3]
           row  frame  time
        0    0      0   NaN
        1    1      0   NaN
        """
        import pandas as pd

        check_is_fitted(self)
        if self.modality != "image":
            raise ValueError(
                "transform_frames reads videos and images; this transformer's "
                f"modality is {self.modality!r}: use transform"
            )
        frames = self._encode_frames(X, normalize=self.normalize)
        table = pd.DataFrame(frames["embedding"], columns=self.get_feature_names_out())
        columns = {name: frames[name] for name in ("row", "frame", "time")}
        return pd.concat([pd.DataFrame(columns), table], axis=1)

    def get_feature_names_out(self, input_features=None):
        """Get the names of the output features: a prefix and a number.

        Parameters
        ----------
        input_features : array-like of str, default=None
            The input column name, checked against ``feature_names_in_`` when
            that is set; it does not change the output names.

        Returns
        -------
        ndarray of str objects
            ``[f"{feature_prefix}_0", ..., f"{feature_prefix}_{d - 1}"]``; with
            ``feature_prefix=None``, the input column's name and the number
            zero-padded to the same width, as skrub's encoders name theirs.
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features, generate_names=False)
        dims = range(self.embedding_dim_)
        if self.feature_prefix is None and self.input_name_ is not None:
            width = len(str(self.embedding_dim_ - 1))
            names = [f"{self.input_name_}_{i:0{width}d}" for i in dims]
        else:
            names = [f"{self.feature_prefix or 'clip'}_{i}" for i in dims]
        return np.asarray(names, dtype=object)


def _column_name(X):
    """The name of the one column ``X`` is, if it has one."""
    columns = getattr(X, "columns", None)
    name = (
        columns[0] if columns is not None and len(columns) else getattr(X, "name", None)
    )
    return name if isinstance(name, str) and name else None
