"""Retrieval metrics over paired image and text embeddings, and their scorers.

:func:`recall_at_k` is the one implementation of retrieval recall in the
package: :meth:`CLIPContrastiveFinetuner.score
<sklearn_clip.CLIPContrastiveFinetuner.score>` is its image-to-text recall@1,
and :func:`make_recall_scorer` turns it into a scorer for
:class:`~sklearn.model_selection.GridSearchCV` or
:func:`~sklearn.model_selection.cross_val_score`.
"""

from numbers import Integral

import numpy as np

from sklearn_clip._retrieval.search import top_k

DIRECTIONS = ("image_to_text", "text_to_image")


def recall_at_k(
    image_embeds, text_embeds, caption_ids, *, k=1, direction="image_to_text"
):
    """Share of queries whose match is among their ``k`` most similar rows.

    Captions are given once each: ``text_embeds`` holds one row per distinct
    caption and ``caption_ids[i]`` is the row of image ``i``'s caption, so
    images that share a caption (or a class label) are all matched by it.

    Parameters
    ----------
    image_embeds : array-like of shape (n_images, d)
        Image embeddings, unit length (similarity is the dot product).
    text_embeds : array-like of shape (n_texts, d)
        Embeddings of the distinct captions, unit length.
    caption_ids : array-like of shape (n_images,)
        For each image, the row of ``text_embeds`` that is its caption.
    k : int, default=1
        How many of the most similar rows count as found; ties are ordered by
        row, so the first of equally similar rows is taken.
    direction : {"image_to_text", "text_to_image"}, default="image_to_text"
        ``"image_to_text"``: for each image, whether its caption is among the
        ``k`` texts most similar to it (averaged over images).
        ``"text_to_image"``: for each caption of at least one image, whether
        one of its images is among the ``k`` images most similar to it
        (averaged over those captions).

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
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}; got {direction!r}")
    images = np.asarray(image_embeds, dtype=np.float32)
    texts = np.asarray(text_embeds, dtype=np.float32)
    ids = np.asarray(caption_ids, dtype=np.int64).reshape(-1)
    in_range = len(ids) == 0 or 0 <= ids.min() <= ids.max() < len(texts)
    if len(ids) != len(images) or not in_range:
        raise ValueError(
            f"caption_ids must give each of the {len(images)} images the row of "
            f"its caption among the {len(texts)} texts; got {len(ids)} ids"
        )
    if not isinstance(k, Integral) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    if direction == "image_to_text":
        _, found = top_k(texts, images, min(k, len(texts)))
        return float(np.mean((found == ids[:, None]).any(axis=1)))
    captions = np.unique(ids)
    _, found = top_k(images, texts[captions], min(k, len(images)))
    return float(np.mean((ids[found] == captions[:, None]).any(axis=1)))


def make_recall_scorer(k=1, direction="image_to_text"):
    """A scorer ``scorer(estimator, X, y)``: recall@k of images and captions.

    The estimator embeds both sides with ``transform(X, modality="image")``
    and ``transform(texts, modality="text")``, as
    :class:`~sklearn_clip.CLIPContrastiveFinetuner` does; captions are the
    distinct values of ``y`` (through the estimator's ``caption_template``,
    if it has one), so it scores what the fine-tuner trains.

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
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}; got {direction!r}")
    return _RecallScorer(k, direction)


class _RecallScorer:
    def __init__(self, k, direction):
        self.k = k
        self.direction = direction

    def __call__(self, estimator, X, y):
        captions = [str(label) for label in np.asarray(y, dtype=object).reshape(-1)]
        template = getattr(estimator, "caption_template", None)
        if template is not None:
            captions = [template.format(label) for label in captions]
        captions = np.asarray(captions, dtype=object)
        distinct, ids = np.unique(captions, return_inverse=True)
        images = estimator.transform(X, modality="image")
        texts = estimator.transform(list(distinct), modality="text")
        return recall_at_k(images, texts, ids, k=self.k, direction=self.direction)

    def __repr__(self):
        return f"make_recall_scorer(k={self.k}, direction={self.direction!r})"
