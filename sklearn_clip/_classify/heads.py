"""Few-shot heads on unit-length image embeddings, in plain numpy.

Both heads start from the zero-shot logits ``z = scale * X @ T.T (+ bias)``
(``T`` the class text embeddings) and add what the labelled images teach:

- :func:`fit_linear_head` learns ``logits = w * z + X @ V.T + b`` by weighted
  cross-entropy plus ``penalty / 2 * ||V||^2``. With ``w = 1`` (and ``b = 0``)
  it is CLAP's idea: a linear probe initialised from the prompts and pulled
  back towards them, an infinite penalty being the zero-shot classifier. With
  ``w = 0`` it is a plain linear probe, exactly scikit-learn's
  ``LogisticRegression(C=1 / (penalty * sum(sample_weight)))``. ``V`` is in
  logit units, so one grid of penalties suits every model.
- :func:`tip_logits` is Tip-Adapter's training-free cache: each query's
  affinity ``exp(-beta * (1 - cosine))`` with every labelled embedding, summed
  per class (weighted by the images' weights) and added with weight ``alpha``.

:func:`cross_validate_grid` scores a grid of either head by stratified
cross-validation on embeddings computed once.
"""

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax
from sklearn.model_selection import RepeatedStratifiedKFold


def zero_shot_logits(X, text_embeddings, scale, bias):
    """The model's own logits from unit-length embeddings, in float64."""
    cosine = np.asarray(X, np.float64) @ np.asarray(text_embeddings, np.float64).T
    logits = scale * cosine
    return logits if bias is None else logits + bias


def _objective(flat, X, base, onehot, weights, penalty, rows, intercept):
    """Weighted cross-entropy plus the penalty, and its gradient over ``rows``."""
    n_rows, d = len(rows), X.shape[1]
    V = np.zeros((onehot.shape[1], d))
    V[rows] = flat[: n_rows * d].reshape(n_rows, d)
    b = np.zeros(onehot.shape[1])
    if intercept:
        b[rows] = flat[n_rows * d :]
    log_p = log_softmax(base + X @ V.T + b, axis=1)
    loss = -np.sum(weights[:, None] * onehot * log_p) + penalty / 2 * np.sum(V * V)
    residual = weights[:, None] * (np.exp(log_p) - onehot)
    grad_V = (residual.T @ X + penalty * V)[rows].ravel()
    if not intercept:
        return loss, grad_V
    return loss, np.concatenate([grad_V, residual.sum(axis=0)[rows]])


def fit_linear_head(
    X,
    y,
    base,
    penalty,
    *,
    prompt_weight=1.0,
    sample_weight=None,
    init=None,
    max_iter=500,
):
    """Fit ``logits = prompt_weight * base + X @ V.T + b``; return ``(V, b, state)``.

    Rows of ``V`` and ``b`` of classes absent from ``y`` stay zero, so those
    classes keep their zero-shot logits. The biases ``b`` are learned (and not
    penalised, as in ``LogisticRegression``) only when ``prompt_weight < 1``:
    the prompts' own logits need none.

    Parameters
    ----------
    X : ndarray of shape (n_samples, d)
        Unit-length image embeddings.
    y : ndarray of shape (n_samples,)
        Class indices into the columns of ``base``.
    base : ndarray of shape (n_samples, n_classes)
        Zero-shot logits of ``X``.
    penalty : float
        Strength of the pull of ``V`` towards zero; ``inf`` returns zeros.
    prompt_weight : float, default=1.0
        How much of the zero-shot logits the head keeps, in [0, 1].
    sample_weight : ndarray of shape (n_samples,), default=None
        Weights of the images in the loss; None weighs them alike.
    init : ndarray, default=None
        ``state`` of a previous call with the same data and prompt weight, to
        warm-start from (along a grid of penalties).
    max_iter : int, default=500
        L-BFGS iterations.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip._classify.heads import fit_linear_head
    >>> X = np.eye(2)
    >>> V, b, _ = fit_linear_head(X, np.array([0, 1]), np.zeros((2, 2)), 0.1)
    >>> bool(V[0, 0] > 0 and V[1, 1] > 0), b.tolist()
    (True, [0.0, 0.0])
    """
    n_classes, d = base.shape[1], X.shape[1]
    V, b = np.zeros((n_classes, d)), np.zeros(n_classes)
    if np.isinf(penalty) or len(X) == 0:
        return V, b, None
    weights = np.ones(len(X)) if sample_weight is None else sample_weight
    rows = np.flatnonzero(np.bincount(y, minlength=n_classes) > 0)
    intercept = prompt_weight < 1
    start = np.zeros(len(rows) * (d + intercept)) if init is None else init
    result = minimize(
        _objective,
        start,
        args=(
            np.asarray(X, np.float64),
            prompt_weight * base,
            np.eye(n_classes)[y],
            weights / weights.sum(),
            penalty,
            rows,
            intercept,
        ),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter},
    )
    V[rows] = result.x[: len(rows) * d].reshape(len(rows), d)
    if intercept:
        b[rows] = result.x[len(rows) * d :]
    return V, b, result.x


def tip_logits(X, base, cache_X, cache_y, n_classes, alpha, beta, cache_weight=None):
    """Tip-Adapter: ``base + alpha * exp(-beta * (1 - X @ cache_X.T)) @ onehot``.

    ``alpha`` is in logit units here (callers multiply by the logit scale);
    ``cache_weight`` weighs each cached image's one-hot row (None: all 1).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip._classify.heads import tip_logits
    >>> tip_logits(np.eye(2), np.zeros((2, 2)), np.eye(2), np.array([1, 0]), 2,
    ...            alpha=1.0, beta=0.0)
    array([[1., 1.],
           [1., 1.]])
    """
    if alpha == 0 or len(cache_X) == 0:
        return base
    affinity = np.exp(-beta * (1.0 - np.asarray(X, np.float64) @ cache_X.T))
    onehot = np.eye(n_classes)[cache_y]
    if cache_weight is not None:
        onehot = onehot * cache_weight[:, None]
    return base + alpha * affinity @ onehot


def _log_loss_and_accuracy(logits, y, weights):
    log_p = log_softmax(logits, axis=1)
    loss = -np.average(log_p[np.arange(len(y)), y], weights=weights)
    return loss, np.average(np.argmax(logits, axis=1) == y, weights=weights)


def cross_validation_folds(n_splits, n_samples, random_state):
    """Stratified folds, repeated until about 10 validation splits when the
    labelled set is small: one split of a few images is too noisy to choose by
    (the repeats are cheap, the embeddings being computed once)."""
    repeats = 1 if n_samples >= 200 else max(1, 10 // n_splits)
    return RepeatedStratifiedKFold(
        n_splits=n_splits, n_repeats=repeats, random_state=random_state
    )


def cross_validate_grid(X, y, weights, candidates, predict, *, folds):
    """Validation log loss and accuracy of each candidate, fold by fold.

    ``predict(train, validation, candidates)`` yields, for one fold, the
    validation logits of every candidate in order (so that a linear head can
    warm-start from its neighbour in the grid). Losses and accuracies are
    weighted by ``weights``. Returns ``(losses, accuracies)``, each of shape
    ``(n_candidates, n_folds)``.
    """
    splits = list(folds.split(X, y))
    losses = np.empty((len(candidates), len(splits)))
    accuracies = np.empty_like(losses)
    for fold, (train, val) in enumerate(splits):
        for i, logits in enumerate(predict(train, val, candidates)):
            losses[i, fold], accuracies[i, fold] = _log_loss_and_accuracy(
                logits, y[val], weights[val]
            )
    return losses, accuracies


def best_candidate(losses, accuracies):
    """Index of the best mean accuracy; ties go to the lower mean log loss,
    then to the earlier (closer to zero-shot) candidate."""
    accuracy = accuracies.mean(axis=1)
    loss = losses.mean(axis=1)
    tied = np.flatnonzero(accuracy >= accuracy.max() - 1e-12)
    return int(tied[np.argmin(loss[tied])])
