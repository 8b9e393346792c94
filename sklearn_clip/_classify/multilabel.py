"""Multi-label zero-shot: indicator targets, per-label scores, F1 thresholds.

An image may show several labels, or none, so each label is scored on its
own. SigLIP-style models were trained that way (a sigmoid per image-text
pair). CLIP was trained with a softmax over texts, so a label's probability is
its prompt against a few *background* prompts that describe no label in
particular ("a photo."): ``sigmoid(logit_label - logsumexp(logits_background))``,
the softmax of the label among the backgrounds.
"""

import numpy as np
from scipy.special import logsumexp
from sklearn.metrics import precision_recall_curve
from sklearn.preprocessing import MultiLabelBinarizer

# Prompts that match any image about as well as none: what a label must beat.
BACKGROUND_PROMPTS = ("a photo.", "a photo of something.", "an image.")


def indicator_targets(y, candidate_labels, n_rows):
    """``(classes, Y)`` from an indicator matrix or a list of label collections.

    An indicator matrix has one column per label of ``candidate_labels``, in
    the sorted order of ``classes_`` (scikit-learn's convention, that of
    :class:`~sklearn.preprocessing.MultiLabelBinarizer`).
    """
    known = None
    if candidate_labels is not None:
        known = np.unique(np.asarray(list(candidate_labels)))
    if _is_indicator(y):
        Y = np.asarray(y)
        if Y.shape[0] != n_rows:
            raise ValueError(
                f"y has {Y.shape[0]} rows but X has {n_rows} images; give one row "
                "of label indicators per image"
            )
        values = np.unique(Y)
        if not np.isin(values, [0, 1]).all():
            raise ValueError(
                "a multi-label y must be a 0/1 indicator matrix (one column per "
                f"label); it holds {values[~np.isin(values, [0, 1])][:5].tolist()!r}. "
                "Binarize label lists with sklearn.preprocessing.MultiLabelBinarizer"
            )
        if known is None or len(known) != Y.shape[1]:
            raise ValueError(
                f"an indicator y has {Y.shape[1]} columns; pass candidate_labels "
                "with that many labels (the columns follow their sorted order, as "
                "MultiLabelBinarizer's classes_)"
            )
        return known, Y.astype(int)
    rows = list(y)
    if len(rows) != n_rows:
        raise ValueError(
            f"y has {len(rows)} entries but X has {n_rows} images; give each image "
            "its list of labels"
        )
    bad = [i for i, row in enumerate(rows) if isinstance(row, str) or np.ndim(row) != 1]
    if bad:
        raise ValueError(
            f"a multi-label y holds one collection of labels per image (or a 0/1 "
            f"indicator matrix); row {bad[0]} is {rows[bad[0]]!r}"
        )
    if known is not None:
        unknown = sorted({lab for row in rows for lab in row} - set(known.tolist()))
        if unknown:
            raise ValueError(
                f"y has labels that are not in candidate_labels: {unknown[:10]!r}; "
                f"candidate_labels are {known.tolist()[:10]!r}"
            )
    binarizer = MultiLabelBinarizer(classes=known)
    Y = binarizer.fit_transform(rows)
    return np.asarray(binarizer.classes_), Y


def _is_indicator(y):
    if hasattr(y, "toarray"):
        return True
    try:
        array = np.asarray(y)
    except ValueError:  # ragged label lists
        return False
    return array.ndim == 2 and array.dtype.kind in "biuf"


def label_logits(logits, background_logits):
    """Each label's logit against the backgrounds (CLIP), ``(n, n_labels)``."""
    return logits - logsumexp(background_logits, axis=1, keepdims=True)


def f1_thresholds(Y, probabilities, default=0.5):
    """Per label, the probability threshold that maximises F1 on ``Y``.

    A label with no positive (or no negative) example keeps ``default``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip._classify.multilabel import f1_thresholds
    >>> Y = np.array([[1, 0], [1, 0], [0, 0]])
    >>> f1_thresholds(Y, np.array([[0.2, 0.1], [0.3, 0.9], [0.1, 0.4]]))
    array([0.2, 0.5])
    """
    thresholds = np.full(Y.shape[1], default, dtype=np.float64)
    for label in range(Y.shape[1]):
        truth = Y[:, label]
        if truth.min() == truth.max():
            continue
        precision, recall, cuts = precision_recall_curve(truth, probabilities[:, label])
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        thresholds[label] = cuts[np.argmax(f1[:-1])]
    return thresholds
