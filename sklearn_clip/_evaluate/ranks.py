"""Retrieval ranks, and the recall, mean rank and MRR made of them.

The one ranking behind every retrieval metric of :mod:`sklearn_clip.metrics`,
which documents the tie rules and exports these functions.
"""

from numbers import Integral

import numpy as np
from scipy import sparse

DIRECTIONS = ("image_to_text", "text_to_image")
TIES = ("pessimistic", "optimistic", "index")
# Queries ranked per block: bounds the (block, n_candidates) matrices held.
_QUERY_BLOCK = 512


# Parameters every metric of a ranking takes, written once (see _shared_doc).
_SHARED_DOCS = {
    "embeds": """image_embeds : array-like of shape (n_images, d)
        Image embeddings, unit length (similarity is the dot product).
    text_embeds : array-like of shape (n_texts, d)
        Text embeddings, unit length.
    pairs : array-like of shape (n_texts,) or (n_pairs, 2)
        The positives: the image row of each text, or ``(image row, text
        row)`` pairs (see :func:`positive_pairs`).""",
    "direction": 'direction : {"image_to_text", "text_to_image"}, '
    'default="image_to_text"\n'
    "        Queries are the images (candidates the texts), or the texts.",
    "ties": """ties : {"pessimistic", "optimistic", "index"}, default="pessimistic"
        Where a negative as similar as the best positive goes: ahead of it,
        behind it, or by row order (see :mod:`sklearn_clip.metrics`).""",
}


def _shared_doc(function):
    """Put the shared parameter descriptions where ``{name}`` marks them."""
    for name, text in _SHARED_DOCS.items():
        function.__doc__ = function.__doc__.replace(
            f"    {{{name}}}\n", f"    {text}\n"
        )
    return function


def check_options(direction, ties):
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}; got {direction!r}")
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}; got {ties!r}")


def positive_pairs(pairs, n_images, n_texts):
    """Make the boolean ``(n_images, n_texts)`` sparse matrix of positive pairs.

    Parameters
    ----------
    pairs : array-like of shape (n_texts,) or (n_pairs, 2)
        1-D: the image row of each text (CLIP_benchmark's and COCO's layout,
        five texts per image say); 2-D: ``(image row, text row)`` pairs, for
        texts shared by several images too.
    n_images : int
        The number of images.
    n_texts : int
        The number of texts.

    Returns
    -------
    scipy.sparse.csr_matrix of bool
        True where an image and a text are a positive pair.

    Examples
    --------
    >>> from sklearn_clip.metrics import positive_pairs
    >>> positive_pairs([0, 0, 1], 2, 3).toarray()
    array([[ True,  True, False],
           [False, False,  True]])
    """
    pairs = np.asarray(pairs)
    if pairs.ndim == 1:
        if len(pairs) != n_texts:
            raise ValueError(
                f"a 1-D pairs gives the image row of each of the {n_texts} "
                f"texts; got {len(pairs)} values"
            )
        pairs = np.column_stack([pairs, np.arange(n_texts)])
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(
            "pairs must be the image row of each text (1-D) or (image row, text "
            f"row) pairs of shape (n_pairs, 2); got shape {pairs.shape}"
        )
    pairs = pairs.astype(np.int64)
    bad = (pairs < 0).any(axis=1) | (pairs[:, 0] >= n_images)
    bad |= pairs[:, 1] >= n_texts
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"pair {first} is {tuple(pairs[first].tolist())}, outside the {n_images} "
            f"images and {n_texts} texts; give row numbers of the embeddings"
        )
    values = np.ones(len(pairs), dtype=bool)
    matrix = sparse.csr_matrix(
        (values, (pairs[:, 0], pairs[:, 1])), shape=(n_images, n_texts)
    )
    matrix.sum_duplicates()
    return matrix.astype(bool)


def _block_ranks(scores, positives, ties):
    """Rank (1-based) of each query's best positive; queries with one at least."""
    best = np.where(positives, scores, -np.inf).max(axis=1, keepdims=True)
    if ties == "pessimistic":
        ahead = scores >= best
    elif ties == "optimistic":
        ahead = scores > best
    else:
        columns = np.arange(scores.shape[1])
        first = np.argmax(positives & (scores == best), axis=1)[:, None]
        ahead = (scores > best) | ((scores == best) & (columns < first))
    return 1 + (ahead & ~positives).sum(axis=1)


@_shared_doc
def retrieval_ranks(
    image_embeds, text_embeds, pairs, *, direction="image_to_text", ties="pessimistic"
):
    """Rank of each query's best-placed positive among the other modality.

    Parameters
    ----------
    {embeds}
    {direction}
    {ties}

    Returns
    -------
    ndarray of int64
        One rank (1 is best) per query that has at least one positive, in
        query order.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip.metrics import retrieval_ranks
    >>> images = np.eye(2)
    >>> texts = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> retrieval_ranks(images, texts, [0, 1, 1]).tolist()  # text 1 ties text 0
    [2, 1]
    >>> retrieval_ranks(images, texts, [0, 1, 1], ties="optimistic").tolist()
    [1, 1]
    >>> retrieval_ranks(images, texts, [0, 1, 1], direction="text_to_image").tolist()
    [1, 2, 1]
    """
    check_options(direction, ties)
    images = np.asarray(image_embeds, dtype=np.float64)
    texts = np.asarray(text_embeds, dtype=np.float64)
    if images.ndim != 2 or texts.ndim != 2 or images.shape[1] != texts.shape[1]:
        raise ValueError(
            "image_embeds and text_embeds must be 2-D with the same number of "
            f"columns; got shapes {images.shape} and {texts.shape}"
        )
    positives = positive_pairs(pairs, len(images), len(texts))
    queries, candidates = images, texts
    if direction == "text_to_image":
        queries, candidates, positives = texts, images, positives.T.tocsr()
    ranks = []
    for start in range(0, len(queries), _QUERY_BLOCK):
        block = positives[start : start + _QUERY_BLOCK].toarray()
        has = block.any(axis=1)
        # float64 products rounded to float32: equal embeddings tie exactly,
        # whatever kernel computed each product.
        scores = (queries[start : start + _QUERY_BLOCK][has] @ candidates.T).astype(
            np.float32
        )
        ranks.append(_block_ranks(scores, block[has], ties))
    return np.concatenate(ranks) if ranks else np.empty(0, np.int64)


def check_k(k):
    if not isinstance(k, Integral) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")


def mean_or_nan(values):
    return float(np.mean(values)) if len(values) else float("nan")


@_shared_doc
def retrieval_recall(
    image_embeds,
    text_embeds,
    pairs,
    *,
    k=1,
    direction="image_to_text",
    ties="pessimistic",
):
    """Compute the share of queries with a positive among their ``k`` nearest rows.

    With five captions per image, an image query is found if any of its
    captions is in its top ``k``; each caption query has its one image.

    Parameters
    ----------
    {embeds}
    k : int, default=1
        How many of the most similar rows count as found.
    {direction}
    {ties}

    Returns
    -------
    float
        Recall@k in [0, 1]; NaN without any query that has a positive.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip.metrics import retrieval_recall
    >>> images = np.eye(2)
    >>> texts = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    >>> retrieval_recall(images, texts, [0, 1, 1])  # text 2 ties text 0
    0.5
    >>> retrieval_recall(images, texts, [0, 1, 1], ties="optimistic")
    1.0
    >>> retrieval_recall(images, texts, [0, 1, 1], direction="text_to_image")
    0.6666666666666666
    """
    check_k(k)
    ranks = retrieval_ranks(
        image_embeds, text_embeds, pairs, direction=direction, ties=ties
    )
    return mean_or_nan(ranks <= k)


@_shared_doc
def mean_rank(
    image_embeds, text_embeds, pairs, *, direction="image_to_text", ties="pessimistic"
):
    """Compute the mean rank of each query's best positive (1 is best).

    Parameters
    ----------
    {embeds}
    {direction}
    {ties}

    Returns
    -------
    float
        The mean of :func:`retrieval_ranks`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip.metrics import mean_rank
    >>> mean_rank(np.eye(2), np.eye(2), [1, 0])
    2.0
    """
    return mean_or_nan(
        retrieval_ranks(
            image_embeds, text_embeds, pairs, direction=direction, ties=ties
        )
    )


@_shared_doc
def mean_reciprocal_rank(
    image_embeds, text_embeds, pairs, *, direction="image_to_text", ties="pessimistic"
):
    """Compute the mean reciprocal rank (MRR) of each query's best positive.

    Parameters
    ----------
    {embeds}
    {direction}
    {ties}

    Returns
    -------
    float
        The mean of ``1 / rank`` over :func:`retrieval_ranks`, in (0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip.metrics import mean_reciprocal_rank
    >>> mean_reciprocal_rank(np.eye(2), np.eye(2), [0, 0], direction="text_to_image")
    0.75
    """
    ranks = retrieval_ranks(
        image_embeds, text_embeds, pairs, direction=direction, ties=ties
    )
    return mean_or_nan(1.0 / ranks)


@_shared_doc
def retrieval_report(
    image_embeds, text_embeds, pairs, *, k=(1, 5, 10), ties="pessimistic"
):
    """Compute every retrieval metric, both directions, one ranking per direction.

    Parameters
    ----------
    {embeds}
    k : sequence of int, default=(1, 5, 10)
        The ``k`` of each recall@k.
    {ties}

    Returns
    -------
    dict
        ``"<direction>_recall@<k>"`` for each ``k``, ``"<direction>_mean_rank"``
        and ``"<direction>_mrr"``, for both directions.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip.metrics import retrieval_report
    >>> report = retrieval_report(np.eye(2), np.eye(2), [0, 1], k=(1,))
    >>> sorted(report)[:3]
    ['image_to_text_mean_rank', 'image_to_text_mrr', 'image_to_text_recall@1']
    >>> report["text_to_image_recall@1"]
    1.0
    """
    for value in k:
        check_k(value)
    report = {}
    for direction in DIRECTIONS:
        ranks = retrieval_ranks(
            image_embeds, text_embeds, pairs, direction=direction, ties=ties
        )
        for value in k:
            report[f"{direction}_recall@{value}"] = mean_or_nan(ranks <= value)
        report[f"{direction}_mean_rank"] = mean_or_nan(ranks)
        report[f"{direction}_mrr"] = mean_or_nan(1.0 / ranks)
    return report
