"""Retrieval metrics over paired image and text embeddings, and their scorers.

Every function here goes through one ranking, :func:`retrieval_ranks`: for
each query (an image, or a text) the rank of its best-placed positive among
all candidates of the other modality. Positives may be many on either side:
COCO and Flickr30k give each image five captions, and a class label is the
caption of many images. Recall@k is the share of queries whose rank is at most
``k``, the mean rank its mean, the mean reciprocal rank the mean of ``1 /
rank``, over the queries that have at least one positive.

**Ties.** Similarities are compared at float32 precision (the embeddings'
own). A negative candidate exactly as similar as a query's best positive is
placed ahead of it under ``ties="pessimistic"`` (the default: a model that
gives every candidate the same score gets the worst rank, not the best),
behind it under ``"optimistic"``, and by row order under ``"index"`` (the
candidate with the lower row comes first, as a stable sort does).

:func:`recall_at_k` (one caption row per image) is the recall that
:meth:`CLIPContrastiveFinetuner.score <sklearn_clip.CLIPContrastiveFinetuner.score>`
reports; :func:`make_retrieval_scorer` and :func:`make_recall_scorer` make
scorers for :class:`~sklearn.model_selection.GridSearchCV` or
:func:`~sklearn.model_selection.cross_val_score`.
"""

import numpy as np

from sklearn_clip._evaluate.ranks import (
    TIES,  # noqa: F401  (the tie rules, importable from here)
    check_k,
    check_options,
    mean_rank,
    mean_reciprocal_rank,
    positive_pairs,
    retrieval_ranks,
    retrieval_recall,
    retrieval_report,
)

__all__ = [
    "mean_rank",
    "mean_reciprocal_rank",
    "positive_pairs",
    "recall_at_k",
    "retrieval_ranks",
    "retrieval_recall",
    "retrieval_report",
    "make_recall_scorer",
    "make_retrieval_scorer",
]
SCORER_METRICS = ("recall", "mean_reciprocal_rank", "neg_mean_rank")


def recall_at_k(
    image_embeds,
    text_embeds,
    caption_ids,
    *,
    k=1,
    direction="image_to_text",
    ties="pessimistic",
):
    """Recall@k where each image has one caption row (which images may share).

    ``text_embeds`` holds one row per distinct caption and ``caption_ids[i]``
    is the row of image ``i``'s caption, so images that share a caption (or
    a class label) are all matched by it. For several captions per image use
    :func:`retrieval_recall`.

    Parameters
    ----------
    image_embeds : array-like of shape (n_images, d)
        Image embeddings, unit length (similarity is the dot product).
    text_embeds : array-like of shape (n_texts, d)
        Embeddings of the distinct captions, unit length.
    caption_ids : array-like of shape (n_images,)
        For each image, the row of ``text_embeds`` that is its caption.
    k : int, default=1
        How many of the most similar rows count as found.
    direction : {"image_to_text", "text_to_image"}, default="image_to_text"
        ``"image_to_text"``: for each image, whether its caption is among the
        ``k`` texts most similar to it (averaged over images).
        ``"text_to_image"``: for each caption of at least one image, whether
        one of its images is among the ``k`` images most similar to it
        (averaged over those captions).
    ties : {"pessimistic", "optimistic", "index"}, default="pessimistic"
        See :func:`retrieval_ranks`.

    Returns
    -------
    float
        Recall@k, in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip.metrics import recall_at_k
    >>> images = np.eye(3)
    >>> captions = np.eye(3)
    >>> recall_at_k(images, captions, [0, 1, 1])
    0.6666666666666666
    >>> recall_at_k(images, captions, [0, 1, 1], k=3)
    1.0
    >>> recall_at_k(images, captions, [0, 1, 1], direction="text_to_image")
    1.0
    """
    check_options(direction, ties)
    n_images, n_texts = len(image_embeds), len(text_embeds)
    ids = np.asarray(caption_ids, dtype=np.int64).reshape(-1)
    in_range = len(ids) == 0 or 0 <= ids.min() <= ids.max() < n_texts
    if len(ids) != n_images or not in_range:
        raise ValueError(
            f"caption_ids must give each of the {n_images} images the row of "
            f"its caption among the {n_texts} texts; got {len(ids)} ids"
        )
    pairs = np.column_stack([np.arange(n_images), ids])
    return retrieval_recall(
        image_embeds, text_embeds, pairs, k=k, direction=direction, ties=ties
    )


def make_retrieval_scorer(
    metric="recall", *, k=1, direction="image_to_text", ties="pessimistic"
):
    """A scorer ``scorer(estimator, X, y)`` of retrieval between images and captions.

    Each row of ``(X, y)`` is one (image, caption) pair, as
    :class:`~sklearn_clip.CLIPContrastiveFinetuner` trains on. Rows with the
    same image (the same path or bytes) are one image with several captions,
    and rows with the same caption (after the estimator's
    ``caption_template``, if it has one) one caption of several images; both
    sides are embedded once with ``transform(..., modality=...)``.

    Parameters
    ----------
    metric : {"recall", "mean_reciprocal_rank", "neg_mean_rank"}, default="recall"
        What is scored; the mean rank is negated, so that higher is better.
    k : int, default=1
        The ``k`` of recall@k.
    direction : {"image_to_text", "text_to_image"}, default="image_to_text"
        See :func:`retrieval_ranks`.
    ties : {"pessimistic", "optimistic", "index"}, default="pessimistic"
        See :func:`retrieval_ranks`.

    Returns
    -------
    callable
        ``scorer(estimator, X, y) -> float``, higher is better.

    Examples
    --------
    >>> from sklearn_clip.metrics import make_retrieval_scorer
    >>> scorer = make_retrieval_scorer("neg_mean_rank", direction="text_to_image")
    >>> scorer.metric, scorer.direction, scorer.ties
    ('neg_mean_rank', 'text_to_image', 'pessimistic')
    """
    if metric not in SCORER_METRICS:
        raise ValueError(f"metric must be one of {SCORER_METRICS}; got {metric!r}")
    check_options(direction, ties)
    check_k(k)
    return _RetrievalScorer(metric, k, direction, ties)


def _captions(estimator, y):
    captions = [str(label) for label in np.asarray(y, dtype=object).reshape(-1)]
    template = getattr(estimator, "caption_template", None)
    if template is not None:
        captions = [template.format(label) for label in captions]
    return np.asarray(captions, dtype=object)


def _image_groups(X):
    """``(distinct images, image id of each row)``: paths and bytes are
    grouped by value, other images (arrays, PIL images) are their own."""
    rows = list(X.iloc[:, 0] if hasattr(X, "iloc") and X.ndim == 2 else X)
    first, ids = {}, []
    for i, item in enumerate(rows):
        key = str(item) if isinstance(item, str) or hasattr(item, "__fspath__") else i
        key = bytes(item) if isinstance(item, bytes | bytearray) else key
        ids.append(first.setdefault(key, len(first)))
    distinct = np.unique(ids, return_index=True)[1]
    return [rows[i] for i in distinct], np.asarray(ids)


class _RetrievalScorer:
    def __init__(self, metric, k, direction, ties):
        self.metric, self.k, self.direction, self.ties = metric, k, direction, ties

    def __call__(self, estimator, X, y):
        distinct_texts, text_ids = np.unique(
            _captions(estimator, y), return_inverse=True
        )
        distinct_images, image_ids = _image_groups(X)
        images = estimator.transform(distinct_images, modality="image")
        texts = estimator.transform(list(distinct_texts), modality="text")
        pairs = np.column_stack([image_ids, text_ids.reshape(-1)])
        options = {"direction": self.direction, "ties": self.ties}
        if self.metric == "recall":
            return retrieval_recall(images, texts, pairs, k=self.k, **options)
        if self.metric == "mean_reciprocal_rank":
            return mean_reciprocal_rank(images, texts, pairs, **options)
        return -mean_rank(images, texts, pairs, **options)

    def __repr__(self):
        return (
            f"make_retrieval_scorer({self.metric!r}, k={self.k}, "
            f"direction={self.direction!r}, ties={self.ties!r})"
        )


def make_recall_scorer(k=1, direction="image_to_text"):
    """A scorer ``scorer(estimator, X, y)``: recall@k of images and captions.

    Each row of ``X`` is its own image and its caption is ``y``'s value
    (through the estimator's ``caption_template``, if it has one), as
    :func:`recall_at_k` counts them: the image-to-text recall@1 of this
    scorer is :meth:`CLIPContrastiveFinetuner.score
    <sklearn_clip.CLIPContrastiveFinetuner.score>`. For images with several
    captions use :func:`make_retrieval_scorer`.

    Parameters
    ----------
    k : int, default=1
        See :func:`recall_at_k`.
    direction : {"image_to_text", "text_to_image"}, default="image_to_text"
        See :func:`recall_at_k`.

    Returns
    -------
    callable
        ``scorer(estimator, X, y) -> float``, higher is better.

    Examples
    --------
    >>> from sklearn_clip.metrics import make_recall_scorer
    >>> scorer = make_recall_scorer(k=5, direction="text_to_image")
    >>> scorer
    make_recall_scorer(k=5, direction='text_to_image')
    """
    check_options(direction, "pessimistic")
    return _RecallScorer(k, direction)


class _RecallScorer:
    def __init__(self, k, direction):
        self.k = k
        self.direction = direction

    def __call__(self, estimator, X, y):
        distinct, ids = np.unique(_captions(estimator, y), return_inverse=True)
        images = estimator.transform(X, modality="image")
        texts = estimator.transform(list(distinct), modality="text")
        return recall_at_k(images, texts, ids, k=self.k, direction=self.direction)

    def __repr__(self):
        return f"make_recall_scorer(k={self.k}, direction={self.direction!r})"
