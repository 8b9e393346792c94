"""Row and class weights, checked where they enter (``fit`` and ``score``).

A negative or NaN weight is never meaningful, and weights that are all zero
leave nothing to learn from; each used to pass silently (a NaN or zero weight
dropped its row, a negative one turned the loss around). One function checks
them all and names the row or the class that is wrong.
"""

import numbers

import numpy as np
from sklearn.utils.class_weight import compute_sample_weight

from sklearn_clip._encoding.inputs import row_label


def check_weights(
    sample_weight, n_samples, *, y=None, class_weight=None, classes=None, index=None
):
    """Each row's weight: ``sample_weight`` times ``class_weight``'s, checked.

    Parameters
    ----------
    sample_weight : array-like of shape (n_samples,), float or None
        The rows' weights; None weighs every row 1.
    n_samples : int
        The number of rows.
    y : array-like of shape (n_samples,), default=None
        The rows' labels, which ``class_weight`` maps to weights.
    class_weight : dict, "balanced" or None, default=None
        A weight per class (labels of ``y``), as scikit-learn's estimators
        take it.
    classes : array-like, default=None
        The labels ``class_weight`` may name (the estimator's ``classes_``);
        None: the labels of ``y``.
    index : pandas.Index, default=None
        The rows' index labels, to name a row in an error.

    Returns
    -------
    ndarray of shape (n_samples,), dtype float64
        Finite, non-negative weights, not all zero.

    Raises
    ------
    ValueError
        Naming the row or the class whose weight is negative, NaN or infinite,
        a ``class_weight`` key that is not a label of ``y``, or weights that
        are zero for every row.

    Examples
    --------
    >>> from sklearn_clip._classify.weights import check_weights
    >>> check_weights(None, 3, y=["a", "b", "b"], class_weight={"a": 2.0})
    array([2., 1., 1.])
    >>> check_weights([1.0, -1.0], 2)
    Traceback (most recent call last):
    ...
    ValueError: sample_weight of row 1 is -1.0; weights must be finite and ...
    """
    weights = _row_weights(sample_weight, n_samples, index)
    if class_weight is not None:
        if isinstance(class_weight, dict):
            known = np.unique(np.asarray(y)) if classes is None else classes
            _check_class_weight(class_weight, np.asarray(known))
        weights = weights * compute_sample_weight(class_weight, np.asarray(y))
    if n_samples and not weights.any():
        raise ValueError(
            "the weights (sample_weight times class_weight) are zero for every "
            "row: there is nothing to learn from. Give some rows, and their "
            "classes, a positive weight."
        )
    return weights


def _row_weights(sample_weight, n_samples, index):
    if sample_weight is None:
        return np.ones(n_samples)
    try:
        weights = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sample_weight must hold numbers: {exc}") from None
    if weights.ndim == 0:
        weights = np.full(n_samples, float(weights))
    if weights.shape != (n_samples,):
        raise ValueError(
            f"sample_weight has shape {weights.shape}; it needs one weight per "
            f"row, shape ({n_samples},)"
        )
    bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
    if len(bad):
        where, value = row_label(bad[0], index), float(weights[bad[0]])
        raise ValueError(
            f"sample_weight of {where} is {value!r}; weights must be finite "
            "and non-negative (0 leaves a row out)."
        )
    return weights


def _check_class_weight(class_weight, classes):
    unknown = [key for key in class_weight if key not in set(classes.tolist())]
    if unknown:
        raise ValueError(
            f"class_weight names {unknown[0]!r}, which is not one of the classes "
            f"{classes.tolist()}; check the spelling of the labels."
        )
    for label, value in class_weight.items():
        valid = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not valid or not np.isfinite(value) or value < 0:
            raise ValueError(
                f"class_weight of class {label!r} is {value!r}; class weights "
                "must be finite, non-negative numbers (0 leaves a class out)."
            )
