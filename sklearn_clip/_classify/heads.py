"""Few-shot heads on unit-length image embeddings, in plain numpy.

Both heads start from the zero-shot logits ``z = scale * X @ T.T (+ bias)``
(``T`` the class text embeddings) and add what the labelled images teach:

- :func:`fit_linear_head` learns a correction ``V`` to the zero-shot weights,
  ``logits = z + X @ V.T``, by cross-entropy plus ``penalty / 2 * ||V||^2``
  (CLAP's idea: a linear probe initialised from the prompts and pulled back
  towards them). ``V`` is in logit units, so one grid of penalties suits every
  model whatever its logit scale: an infinite penalty is the zero-shot
  classifier, a tiny one a plain probe started from the prompts.
- :func:`tip_logits` is Tip-Adapter's training-free cache: each query's
  affinity ``exp(-beta * (1 - cosine))`` with every labelled embedding, summed
  per class and added with weight ``alpha``; ``alpha = 0`` is zero-shot.

:func:`cross_validate_grid` scores a grid of either head by stratified
cross-validation on embeddings computed once.
"""

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, logsumexp
from sklearn.model_selection import StratifiedKFold

# Penalties tried by regularization="cv", strongest first: from "stay at
# zero-shot" (inf) to nearly a plain probe. The fit warm-starts along it.
LINEAR_GRID = (np.inf, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 1e-3, 1e-4)
# Tip-Adapter's (alpha, beta): alpha in units of the model's logit scale
# (Tip-Adapter's CLIP has a scale of 100 and alpha near 1, i.e. 0.01 here).
TIP_ALPHAS = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3)
TIP_BETAS = (1.0, 3.0, 5.5, 10.0, 20.0)


def zero_shot_logits(X, text_embeddings, scale, bias):
    """The model's own logits from unit-length embeddings, in float64."""
    cosine = np.asarray(X, np.float64) @ np.asarray(text_embeddings, np.float64).T
    logits = scale * cosine
    return logits if bias is None else logits + bias


def _objective(flat, X, base, onehot, penalty, trainable):
    V = np.zeros((onehot.shape[1], X.shape[1]))
    V[trainable] = flat.reshape(trainable.sum(), X.shape[1])
    logits = base + X @ V.T
    log_p = log_softmax(logits, axis=1)
    loss = -np.sum(onehot * log_p) / len(X) + penalty / 2 * np.sum(V * V)
    grad = (np.exp(log_p) - onehot).T @ X / len(X) + penalty * V
    return loss, grad[trainable].ravel()


def fit_linear_head(X, y, base, penalty, *, init=None, max_iter=500):
    """The correction ``V`` of shape ``(n_classes, d)``; rows of classes absent
    from ``y`` stay zero, so those classes keep their text weights.

    Parameters
    ----------
    X : ndarray of shape (n_samples, d)
        Unit-length image embeddings.
    y : ndarray of shape (n_samples,)
        Class indices into the columns of ``base``.
    base : ndarray of shape (n_samples, n_classes)
        Zero-shot logits of ``X``.
    penalty : float
        Strength of the pull towards zero-shot; ``inf`` returns zeros.
    init : ndarray of shape (n_classes, d), default=None
        A starting point (warm start along a grid); zeros by default.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip._classify.heads import fit_linear_head
    >>> X = np.eye(2)
    >>> V = fit_linear_head(X, np.array([0, 1]), np.zeros((2, 2)), 0.1)
    >>> bool(V[0, 0] > 0 and V[1, 1] > 0)
    True
    """
    n_classes, d = base.shape[1], X.shape[1]
    V = np.zeros((n_classes, d))
    if np.isinf(penalty) or len(X) == 0:
        return V
    X = np.asarray(X, np.float64)
    onehot = np.eye(n_classes)[y]
    trainable = np.bincount(y, minlength=n_classes) > 0
    start = V if init is None else init
    result = minimize(
        _objective,
        start[trainable].ravel(),
        args=(X, base, onehot, penalty, trainable),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter},
    )
    V[trainable] = result.x.reshape(trainable.sum(), d)
    return V


def tip_logits(X, base, cache_X, cache_y, n_classes, alpha, beta):
    """Tip-Adapter: ``base + alpha * exp(-beta * (1 - X @ cache_X.T)) @ onehot``.

    ``alpha`` is in logit units here (callers multiply by the logit scale).

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
    return base + alpha * affinity @ np.eye(n_classes)[cache_y]


def _log_loss_and_accuracy(logits, y):
    log_p = logits - logsumexp(logits, axis=1, keepdims=True)
    loss = -np.mean(log_p[np.arange(len(y)), y])
    return loss, np.mean(np.argmax(logits, axis=1) == y)


def cross_validate_grid(X, y, base, candidates, predict, *, n_splits, random_state):
    """Mean validation log loss and accuracy of each candidate, over folds.

    ``predict(train, validation, candidates)`` yields, for one fold, the
    validation logits of every candidate in order (so that a linear head can
    warm-start from its neighbour in the grid). Returns ``(losses,
    accuracies)``, each of shape ``(n_candidates, n_splits)``.
    """
    folds = StratifiedKFold(n_splits, shuffle=True, random_state=random_state)
    losses = np.empty((len(candidates), n_splits))
    accuracies = np.empty_like(losses)
    for fold, (train, val) in enumerate(folds.split(X, y)):
        for i, logits in enumerate(predict(train, val, candidates)):
            losses[i, fold], accuracies[i, fold] = _log_loss_and_accuracy(
                logits, y[val]
            )
    return losses, accuracies


def best_candidate(losses, accuracies):
    """Index of the best mean accuracy; ties go to the lower mean log loss,
    then to the earlier (closer to zero-shot) candidate."""
    accuracy = accuracies.mean(axis=1)
    loss = losses.mean(axis=1)
    tied = np.flatnonzero(accuracy >= accuracy.max() - 1e-12)
    return int(tied[np.argmin(loss[tied])])
