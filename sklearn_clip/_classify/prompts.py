"""From class labels to class embeddings: label space, prompts, ensembling.

A zero-shot classifier turns every class into one or more sentences, embeds
them with the text tower and averages them into one class embedding. This
module resolves ``templates=`` (a set of :mod:`~sklearn_clip._classify.templates`
or the user's own, checked), settles the label space and what each class is
called, builds the prompts of every class, warns where the model's tokenizer
does not know their language, and averages their embeddings the way CLIP's
authors did: the mean of L2-normalised prompt embeddings, renormalised.
"""

import string
import warnings

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

# The built-in sets live in templates.py; their names stay importable from here.
from sklearn_clip._classify.templates import (  # noqa: F401
    OPENAI_IMAGENET_7_TEMPLATES,
    OPENAI_IMAGENET_TEMPLATES,
    SIMPLE_TEMPLATES,
    TEMPLATE_SETS,
)
from sklearn_clip._encoding.inputs import is_missing
from sklearn_clip._encoding.tokens import warn_uncovered


def check_template(template):
    """Return ``template`` if it holds exactly one ``{}`` placeholder, else raise.

    Literal braces are written doubled (``{{`` and ``}}``), as in
    :meth:`str.format`. Named or numbered fields (``{label}``, ``{0}``) are
    rejected so that every template fills the same way.

    Examples
    --------
    >>> from sklearn_clip._classify.prompts import check_template
    >>> check_template("a photo of a {}.")
    'a photo of a {}.'
    """
    if not isinstance(template, str):
        raise TypeError(
            f"each template must be a str with one '{{}}' placeholder; got "
            f"{type(template).__name__} {template!r}"
        )
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as exc:
        raise ValueError(
            f"template {template!r} is not a valid format string ({exc}); write "
            "literal braces as '{{' and '}}'"
        ) from exc
    if fields != [("", "", None)]:
        found = "no placeholder" if not fields else f"{len(fields)} fields"
        if len(fields) == 1:
            found = "a named, numbered or formatted field"
        raise ValueError(
            f"template {template!r} must contain exactly one '{{}}' placeholder, "
            f"where the class name goes; it has {found}. Example: "
            "'a photo of a {}.'"
        )
    return template


def resolve_templates(templates):
    """A tuple of checked templates from a set name, one template or a sequence.

    ``None`` gives no templates (prompts then come from descriptions only).

    Examples
    --------
    >>> from sklearn_clip._classify.prompts import resolve_templates
    >>> len(resolve_templates("openai_imagenet")), resolve_templates("{}!")
    (80, ('{}!',))
    """
    if templates is None:
        return ()
    if isinstance(templates, str):
        if templates in TEMPLATE_SETS:
            return TEMPLATE_SETS[templates]
        if "{" not in templates:
            raise ValueError(
                f"templates={templates!r} is neither a built-in set "
                f"{sorted(TEMPLATE_SETS)} nor a template with a '{{}}' placeholder"
            )
        return (check_template(templates),)
    templates = tuple(templates)
    if not templates:
        raise ValueError(
            "templates is empty; pass a set name such as 'simple', a template "
            "such as 'a photo of a {}.', or None to use label_descriptions only"
        )
    return tuple(check_template(t) for t in templates)


def _as_descriptions(label, value):
    descriptions = [value] if isinstance(value, str) else list(value)
    if not descriptions or not all(isinstance(d, str) for d in descriptions):
        raise ValueError(
            f"label_descriptions[{label!r}] must be a str or a non-empty list of "
            f"str; got {value!r}"
        )
    return descriptions


def class_prompts(classes, templates, names, descriptions=None):
    """The prompts of each class: templates filled with its name, then descriptions.

    Parameters
    ----------
    classes : sequence
        The class labels, in the order of the result.
    templates : tuple of str
        Checked templates (see :func:`resolve_templates`).
    names : dict
        Label -> the text put into the templates.
    descriptions : dict, default=None
        Label -> a sentence or list of sentences used as prompts unchanged.

    Returns
    -------
    list of list of str
        One non-empty list of prompts per class.
    """
    labels = classes.tolist() if isinstance(classes, np.ndarray) else list(classes)
    descriptions = descriptions or {}
    unknown = [label for label in descriptions if label not in set(labels)]
    if unknown:
        raise ValueError(
            f"label_descriptions has labels that are not classes: {unknown!r}; "
            f"the classes are {labels!r}"
        )
    prompts = []
    for label in labels:
        own = []
        if templates:
            own += [template.format(names[label]) for template in templates]
        if label in descriptions:
            own += _as_descriptions(label, descriptions[label])
        if not own:
            raise ValueError(
                f"class {label!r} has no prompt: templates=None needs "
                "label_descriptions for every class"
            )
        prompts.append(own)
    return prompts


def ensemble(embeddings, counts):
    """Average consecutive groups of rows into unit vectors.

    Each row is L2-normalised first so every prompt weighs the same, and the
    mean is normalised again because a mean of unit vectors is shorter than
    one, and cosine similarity needs unit length.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip._classify.prompts import ensemble
    >>> ensemble(np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]]), [2, 1]).round(4)
    array([[0.7071, 0.7071],
           [0.    , 1.    ]], dtype=float32)
    """
    embeddings = np.array(embeddings, dtype=np.float64)  # a copy, changed below
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    means = np.add.reduceat(embeddings, starts, axis=0) / np.asarray(counts)[:, None]
    return (means / np.linalg.norm(means, axis=1, keepdims=True)).astype(np.float32)


def class_embeddings(handle, prompts, *, batch_size=32, cache=None):
    """Encode every class's prompts and ensemble them into ``(n_classes, d)``.

    All prompts of all classes go to the text tower in one call, which encodes
    each distinct prompt once and batches prompts of one template together, so
    that a causal text tower runs their shared first tokens once; prompts
    encoded recently by the same model come from memory, and from ``cache``
    (an :class:`~sklearn_clip._encoding.cache.EmbeddingCache`) when given.
    Gives a :class:`~sklearn_clip.exceptions.TokenizerCoverageWarning` where
    the model's tokenizer does not know most non-ASCII characters of the
    prompts.
    """
    flat = [prompt for own in prompts for prompt in own]
    warn_uncovered(handle, flat)
    embeddings = handle.encode_texts(
        flat, batch_size=batch_size, normalize=True, cache=cache, order="prefix"
    )
    return ensemble(embeddings, [len(own) for own in prompts])


# -- the label space and what each class is called ----------------------

_ENCODED_Y_HINT = (
    " cross_val_predict(method='predict_proba', 'predict_log_proba' or "
    "'decision_function') label-encodes y to 0..k-1 before fitting: use "
    "method='predict', or encode y yourself and pass candidate_labels as a dict "
    "{code: class name}."
)


def label_space(candidate_labels, y, *, label_list):
    """``(classes_, {label: name} or None)`` from the parameters and ``y``."""
    names = None
    classes = None
    if candidate_labels is not None:
        if isinstance(candidate_labels, dict):
            names = dict(candidate_labels)
        classes = _unique_labels(list(candidate_labels), "candidate_labels")
    if y is not None:
        y = _check_y(y, label_list=label_list)
        if classes is None:
            classes = _unique_labels(y.tolist(), "y")
        else:
            known = set(classes.tolist())
            unknown = sorted(
                {label for label in y.tolist() if label not in known}, key=str
            )
            if unknown:
                hint = _ENCODED_Y_HINT if _all_integers(unknown) else ""
                raise ValueError(
                    f"y has labels that are not in candidate_labels: "
                    f"{unknown[:10]!r}; candidate_labels are "
                    f"{classes.tolist()[:10]!r}.{hint}"
                )
    if classes is None:
        raise ValueError(
            "CLIPZeroShotClassifier needs a label space: it requires y to be "
            "passed, but the target y is None; pass candidate_labels, or labels "
            "as y (fit(X, y), or fit(None, labels))"
        )
    if len(classes) < 2:
        raise ValueError(
            f"zero-shot classification needs at least two classes; got 1 class: "
            f"{classes.tolist()!r}"
        )
    return classes, names


def _check_y(y, *, label_list):
    y = column_or_1d(y, warn=True)
    missing = np.flatnonzero([is_missing(label) for label in y])
    if missing.size:
        raise ValueError(
            f"Input y contains NaN or None (at positions {missing[:10].tolist()}); "
            "every label must be a class"
        )
    with warnings.catch_warnings():
        if label_list:
            # fit(None, labels) may list each label once; that is not a
            # regression target, whatever the ratio of classes to rows says.
            warnings.filterwarnings("ignore", message="The number of unique classes")
        check_classification_targets(y)
    return y


def _unique_labels(labels, name):
    if len({isinstance(label, str) for label in labels}) > 1:
        raise ValueError(
            f"{name} mixes string and non-string labels: {labels[:10]!r}; use one type"
        )
    return np.unique(np.asarray(labels))


def _all_integers(labels):
    return all(isinstance(label, int | np.integer) for label in labels)


def prompt_names(classes, names, templates):
    """Label -> the text put into templates; only string labels name themselves."""
    if names is not None:
        bad = {
            label: name for label, name in names.items() if not isinstance(name, str)
        }
        if bad:
            raise ValueError(
                f"candidate_labels as a dict maps labels to the class names to "
                f"prompt with, which must be strings; got {bad!r}"
            )
        return names
    unnamed = [label for label in classes.tolist() if not isinstance(label, str)]
    if unnamed and templates is not None:
        hint = _ENCODED_Y_HINT if _all_integers(unnamed) else ""
        raise ValueError(
            f"the class labels {unnamed[:10]!r} are not strings, and prompts are "
            "built from class names: pass candidate_labels as a dict {label: class "
            "name}, e.g. {0: 'cat', 1: 'dog'}, or label_descriptions with "
            f"templates=None.{hint}"
        )
    return {label: label for label in classes.tolist()}
