"""The errors and warnings that sklearn-clip raises, like :mod:`sklearn.exceptions`.

Catch or filter them by these names. The modules that raise them import them
from here, and this module imports nothing from the rest of the package, so
any module may import it without a cycle.
"""

__all__ = [
    "CacheEntryWarning",
    "CheckpointWarning",
    "FewShotWarning",
    "ImageInputError",
    "InputErrorWarning",
    "NonFiniteLossError",
    "TokenizerCoverageWarning",
    "UnsupportedImageError",
]


class ImageInputError(ValueError):
    """An image input could not be read or converted.

    The message names the row position, the pandas index label where there
    is one, and the path or array shape; the original exception (a
    ``FileNotFoundError``, a Pillow decoding error, an
    :class:`UnsupportedImageError`...) is chained as ``__cause__``. Raised
    for the first bad row under ``on_error="raise"``, and under either
    policy when every row of a call fails.

    See Also
    --------
    InputErrorWarning : What a bad row gives under ``on_error="nan"``.

    Examples
    --------
    >>> from sklearn_clip import CLIPEmbeddingTransformer
    >>> from sklearn_clip.exceptions import ImageInputError
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> embedder = CLIPEmbeddingTransformer(make_tiny_clip()).fit(["missing.jpg"])
    >>> try:
    ...     embedder.transform(["missing.jpg"])
    ... except ImageInputError as error:
    ...     print(type(error.__cause__).__name__)
    FileNotFoundError
    """


class UnsupportedImageError(TypeError):
    """A row is missing (None/NaN) or is not a type that can hold an image.

    Rows hold images as paths, bytes, PIL images or arrays; anything else is
    the row's fault, so this is chained under the :class:`ImageInputError`
    that names the row (``on_error="raise"``), or counted as a bad row
    (``on_error="nan"``).

    See Also
    --------
    ImageInputError : The error that names the row.

    Examples
    --------
    >>> from sklearn_clip import CLIPEmbeddingTransformer
    >>> from sklearn_clip.exceptions import ImageInputError, UnsupportedImageError
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> embedder = CLIPEmbeddingTransformer(make_tiny_clip()).fit([None])
    >>> try:
    ...     embedder.transform([None])
    ... except ImageInputError as error:
    ...     print(isinstance(error.__cause__, UnsupportedImageError))
    True
    """


class InputErrorWarning(UserWarning):
    """Some rows could not be read and came back as NaN (``on_error="nan"``).

    One warning per call sums the bad rows up, and carries each of them in
    ``errors``: catch it to see which rows failed, as estimators record no
    per-call state. The fine-tuner gives it, too, for the pairs that
    ``on_error="skip"`` left out.

    Parameters
    ----------
    message : str
        The summary: how many rows failed, of what, and the first error.
    errors : list of dict, default=()
        The rows that failed, one dict each.

    Attributes
    ----------
    errors : list of dict
        One dict per failed row, in row order: ``position`` (the row in the
        call's input), ``index`` (the pandas index label, or the position),
        ``source`` (the path, or a short description), ``error`` (the
        exception type) and ``message``.

    See Also
    --------
    ImageInputError : What a bad row raises under ``on_error="raise"``.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from sklearn_clip import CLIPEmbeddingTransformer
    >>> from sklearn_clip.exceptions import InputErrorWarning
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> rows = [np.zeros((30, 30, 3), dtype=np.uint8), "missing.jpg"]
    >>> embedder = CLIPEmbeddingTransformer(make_tiny_clip(), on_error="nan")
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always", InputErrorWarning)
    ...     embeddings = embedder.fit_transform(rows)
    >>> [bad] = [w.message for w in caught if w.category is InputErrorWarning]
    >>> [(row["position"], row["source"], row["error"]) for row in bad.errors]
    [(1, 'missing.jpg', 'FileNotFoundError')]
    >>> bool(np.isnan(embeddings[1]).all())
    True
    """

    def __init__(self, message, errors=()):
        super().__init__(message)
        self.errors = list(errors)


class CacheEntryWarning(UserWarning):
    """Damaged entries of the embedding cache were recomputed and rewritten.

    An entry whose checksum, values or norm is wrong is treated as a miss:
    the outputs are what an empty cache gives. One warning per call counts
    the damaged entries; frequent ones point at a failing disk.

    See Also
    --------
    sklearn_clip.CLIPEmbeddingTransformer : Its ``cache_dir`` is such a cache.

    Examples
    --------
    Make damaged entries an error, to stop rather than recompute:

    >>> import warnings
    >>> from sklearn_clip.exceptions import CacheEntryWarning
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", CacheEntryWarning)
    ...     try:
    ...         warnings.warn("3 damaged entries", CacheEntryWarning)
    ...     except CacheEntryWarning as warning:
    ...         print(warning)
    3 damaged entries
    """


class CheckpointWarning(UserWarning):
    """A checkpoint could not be read and an older one was used instead.

    Given by :class:`~sklearn_clip.CLIPContrastiveFinetuner` with
    ``resume=True``, naming the file that does not load; training continues
    from the newest checkpoint that does.

    See Also
    --------
    sklearn_clip.CLIPContrastiveFinetuner : Writes and resumes checkpoints.

    Examples
    --------
    >>> import warnings
    >>> from sklearn_clip.exceptions import CheckpointWarning
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn("step-00000004.pt: empty file", CheckpointWarning)
    >>> caught[0].category.__name__
    'CheckpointWarning'
    """


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or infinite loss or gradient and stopped.

    Such a step is never applied: the fine-tuner stays fitted with the
    weights of the last good step, and the message says where training
    stopped and what to change (a lower ``learning_rate``, ``max_grad_norm``,
    the inputs).

    Parameters
    ----------
    message : str
        Where training stopped, and why.
    result : object, default=None
        The outcome of training as of the last good step.

    Attributes
    ----------
    result : object or None
        The outcome of training, holding finite weights: those of the last
        good step.

    See Also
    --------
    sklearn_clip.CLIPContrastiveFinetuner : Raises it from ``fit``.

    Examples
    --------
    >>> from sklearn_clip.exceptions import NonFiniteLossError
    >>> error = NonFiniteLossError("Training stopped at step 3: the loss is nan.")
    >>> isinstance(error, FloatingPointError), error.result is None
    (True, True)
    """

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result


class FewShotWarning(UserWarning):
    """Warn that ``regularization="cv"`` could not cross-validate.

    Issued by :meth:`CLIPFewShotClassifier.fit
    <sklearn_clip.CLIPFewShotClassifier.fit>` when a class has fewer than two
    labelled images: the regularisation then takes a fixed value.

    See Also
    --------
    sklearn_clip.CLIPFewShotClassifier : The classifier that gives it.

    Examples
    --------
    >>> import warnings
    >>> from sklearn_clip.exceptions import FewShotWarning
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn("one image of 'cat'", FewShotWarning)
    >>> caught[0].category.__name__
    'FewShotWarning'
    """


class TokenizerCoverageWarning(UserWarning):
    """The model's tokenizer does not know most characters of the prompts.

    Given by the classifiers' ``fit`` when more than half of the non-ASCII
    characters of the prompts (labels and templates) fall into the
    tokenizer's unknown token or are spelled byte by byte: the vocabulary,
    and in all likelihood the text tower, saw too little of the language, so
    the class embeddings carry little of the labels' meaning. The share is
    measured on the prompts with the model's own tokenizer, whatever the
    family; its absence does not prove that a text tower understands a
    language (CLIP's tokenizer reads German, its text tower was trained on
    English).

    See Also
    --------
    sklearn_clip.CLIPZeroShotClassifier : Its ``templates`` include sets in
        German, French, Spanish, Chinese and Japanese.

    Examples
    --------
    >>> import warnings
    >>> from sklearn_clip import CLIPZeroShotClassifier
    >>> from sklearn_clip.exceptions import TokenizerCoverageWarning
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> clf = CLIPZeroShotClassifier(
    ...     make_tiny_clip(), candidate_labels=["狗", "猫"], templates="simple_zh"
    ... )
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     clf = clf.fit()
    >>> [w.category.__name__ for w in caught]
    ['TokenizerCoverageWarning']
    """
