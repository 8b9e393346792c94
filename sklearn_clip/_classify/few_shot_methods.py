"""The few-shot methods: one class per ``method``, chosen once from ``METHODS``.

Every method is a head on the zero-shot logits with the same two settings,
so that one search grid spans them all:

- ``regularization``: the pull towards the prompts, from ``inf`` (the
  zero-shot classifier) down to a small number (the labelled images decide);
- ``prompt_weight``: how much of the zero-shot logits the head keeps, from 1
  (start from the prompts) to 0 (learn from the labelled images alone).

A head is fitted on embeddings with :meth:`fit` and scores them with
:meth:`logits`; :meth:`fold_logits` scores a grid of settings on one
cross-validation fold, in the order the grid lists them. Where
cross-validation cannot run (a class with one image),
:func:`fall_back_setting` gives the fixed setting used instead.
"""

import warnings
from itertools import product
from numbers import Real

import numpy as np

from sklearn_clip._classify.heads import fit_linear_head, tip_logits
from sklearn_clip.exceptions import FewShotWarning

# Penalties tried by regularization="cv", strongest first: from "stay at
# zero-shot" (inf) to nearly unregularised. The linear fit warm-starts along it.
REGULARIZATIONS = (np.inf, 10.0, 1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
# Prompt weights tried by prompt_weight="cv": the prompts' end (CLAP) and the
# plain probe's end, so that cross-validation can pick a probe when it wins.
PROMPT_WEIGHTS = (1.0, 0.0)
# Tip-Adapter's sharpness, tried by regularization="cv"; a fixed
# regularization uses Tip-Adapter's default.
TIP_BETAS = (1.0, 5.5, 20.0)
TIP_DEFAULT_BETA = 5.5
# Tip-Adapter's alpha, in units of the model's logit scale, is this over the
# regularization: regularization=1 is Tip-Adapter's alpha=1 with CLIP's scale
# of 100, and regularization=inf is alpha=0 (zero-shot).
TIP_ALPHA_UNIT = 0.01
# What "cv" falls back to when some class has a single image: the prompts'
# end, pulled hard enough that one image per class moves the head a little.
FALLBACK = {"regularization": 1.0, "prompt_weight": 1.0}
ZERO_SHOT = {"regularization": np.inf, "prompt_weight": 1.0}


def fall_back_setting(grid, counts, classes, params):
    """The fixed setting used when some class has one image (no cross-validation).

    The estimator's ``params`` set to ``"cv"`` take :data:`FALLBACK`'s
    values, after a :class:`FewShotWarning` naming the classes with one image.
    """
    fixed = {k: v for k, v in FALLBACK.items() if params[k] == "cv"}
    rare = classes[np.flatnonzero(counts == 1)].tolist()
    warnings.warn(
        f"cross-validation needs at least two images of every labelled class; "
        f"{rare[:5]!r} have one. Using {fixed!r} instead; pass these values "
        "to silence this warning.",
        FewShotWarning,
        stacklevel=5,
    )
    setting = {**grid[0], **fixed}
    if "beta" in setting:
        setting["beta"] = TIP_DEFAULT_BETA
    return setting


def _values(value, grid):
    return list(grid) if isinstance(value, str) else [float(value)]


def check_regularization(method, value):
    """Refuse a tuple ``regularization`` but Tip-Adapter's finite (alpha, beta)."""
    if not isinstance(value, tuple):
        return
    if method != "tip":
        raise ValueError(
            f"regularization={value!r} is Tip-Adapter's former (alpha, beta) "
            f"form, which method={method!r} does not take; pass a float "
            "(the pull towards the prompts, as for every method) or 'cv'."
        )
    if len(value) != 2 or not all(
        isinstance(v, Real) and np.isfinite(v) and v >= 0 for v in value
    ):
        raise ValueError(
            "a tuple regularization is Tip-Adapter's (alpha, beta): two finite "
            f"numbers >= 0; got {value!r}. Or pass a float, the pull towards "
            "the prompts (alpha = 0.01 / regularization), or 'cv'."
        )


class LinearHead:
    """``logits = prompt_weight * zero_shot + X @ V.T + b``, fitted by
    :func:`~sklearn_clip._classify.heads.fit_linear_head`
    (``regularization`` is its penalty)."""

    def __init__(self, logit_scale, max_iter=500):
        self.logit_scale = logit_scale
        self.max_iter = max_iter

    @staticmethod
    def grid(regularization, prompt_weight):
        """The settings to try, each prompt weight's penalties strongest first;
        a plain probe without penalty (``inf`` with weight 0) is left out."""
        return [
            {"regularization": r, "prompt_weight": w}
            for w, r in product(
                _values(prompt_weight, PROMPT_WEIGHTS),
                _values(regularization, REGULARIZATIONS),
            )
            if w > 0 or np.isfinite(r)
        ]

    def fit(self, X, y, base, weights, setting, *, init=None):
        self.prompt_weight = setting["prompt_weight"]
        self.correction, self.intercept, self.state = fit_linear_head(
            X,
            y,
            base,
            setting["regularization"],
            prompt_weight=self.prompt_weight,
            sample_weight=weights,
            init=init,
            max_iter=self.max_iter,
        )
        return self

    def logits(self, X, base):
        return self.prompt_weight * base + X @ self.correction.T + self.intercept

    def fold_logits(self, X, y, base, weights, train, val, grid):
        state, previous = None, None
        for setting in grid:
            if setting["prompt_weight"] != previous:  # a new path: start afresh
                state, previous = None, setting["prompt_weight"]
            self.fit(
                X[train], y[train], base[train], weights[train], setting, init=state
            )
            state = self.state
            yield self.logits(X[val], base[val])

    def fitted_attributes(self, class_embeddings):
        """``coef_`` and ``intercept_``: the logits as one linear model."""
        text = self.prompt_weight * self.logit_scale * class_embeddings
        return {"coef_": text + self.correction, "intercept_": self.intercept}


class TipHead:
    """Tip-Adapter: ``prompt_weight * zero_shot`` plus ``alpha * logit_scale``
    times each class's summed affinities to its labelled images, with
    ``alpha = 0.01 / regularization``."""

    def __init__(self, logit_scale, max_iter=None):
        self.logit_scale = logit_scale

    @staticmethod
    def grid(regularization, prompt_weight):
        betas = TIP_BETAS if isinstance(regularization, str) else [TIP_DEFAULT_BETA]
        if isinstance(regularization, tuple):  # the former (alpha, beta) form
            alpha, beta = regularization
            regularization = TIP_ALPHA_UNIT / alpha if alpha > 0 else np.inf
            betas = [float(beta)]
        return [
            {"regularization": r, "prompt_weight": w, "beta": beta}
            for w, r, beta in product(
                _values(prompt_weight, PROMPT_WEIGHTS),
                _values(regularization, REGULARIZATIONS),
                betas,
            )
            if w > 0 or np.isfinite(r)
        ]

    def fit(self, X, y, base, weights, setting):
        self.setting = {"beta": TIP_DEFAULT_BETA, **setting}
        self.cache, self.cache_labels = X.astype(np.float32), y
        self.cache_weight = weights  # a weight of 2 counts like the image twice
        self.n_classes = base.shape[1]
        return self

    def logits(self, X, base):
        regularization = self.setting["regularization"]
        return tip_logits(
            X,
            self.setting["prompt_weight"] * base,
            self.cache.astype(np.float64),
            self.cache_labels,
            self.n_classes,
            TIP_ALPHA_UNIT / regularization * self.logit_scale,
            self.setting["beta"],
            self.cache_weight,
        )

    def fold_logits(self, X, y, base, weights, train, val, grid):
        for setting in grid:
            self.fit(X[train], y[train], base[train], weights[train], setting)
            yield self.logits(X[val], base[val])

    def fitted_attributes(self, class_embeddings):
        """The cache: labelled embeddings, their class indices and weights."""
        return {
            "cache_embeddings_": self.cache,
            "cache_labels_": self.cache_labels,
            "cache_weights_": self.cache_weight,
        }


METHODS = {"linear": LinearHead, "tip": TipHead}


def head_from_0_1_0(state):
    """``(head, setting)`` of a classifier pickled by sklearn-clip 0.1.0, or
    None if it was not fitted.

    0.1.0 kept the linear head as ``coef_`` (the prompts included: logits
    ``X @ coef_.T``, plus SigLIP's bias) and Tip-Adapter's as its cache, with
    ``regularization_ = (alpha, beta)``; it had no ``prompt_weight`` (it always
    started from the prompts) nor ``class_weight``: ``state`` gets those.
    """
    state.setdefault("prompt_weight", 1.0)
    state.setdefault("class_weight", None)
    if "regularization_" not in state:
        return None
    scale, n_classes = state["logit_scale_"], len(state["classes_"])
    if state["method"] == "linear":
        head = LinearHead(scale, state["max_iter"])
        head.prompt_weight, head.state = 1.0, None
        head.correction = state["coef_"] - scale * state["class_embeddings_"]
        head.intercept = np.zeros(n_classes)
        return head, {"regularization": state["regularization_"], "prompt_weight": 1.0}
    alpha, beta = state["regularization_"]
    setting = {
        "regularization": TIP_ALPHA_UNIT / alpha if alpha > 0 else np.inf,
        "prompt_weight": 1.0,
        "beta": beta,
    }
    cache, labels = state["cache_embeddings_"], state["cache_labels_"]
    head = TipHead(scale).fit(cache, labels, np.empty((0, n_classes)), None, setting)
    return head, setting
