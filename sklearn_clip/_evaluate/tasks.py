"""What is measured of one model: zero-shot accuracy, few-shot curves, retrieval.

Each task runs the package's public estimators with the model's handle and
the run's embedding cache, so images decoded for one task (or one earlier
run) are read from the cache by the next, and returns result rows: dicts
with ``task``, ``prompts``, ``metric``, ``shots``, ``seed`` and ``value``.
"""

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    top_k_accuracy_score,
)

from sklearn_clip._classify.few_shot import CLIPFewShotClassifier
from sklearn_clip._classify.zero_shot import CLIPZeroShotClassifier
from sklearn_clip._embedding import CLIPEmbeddingTransformer
from sklearn_clip._evaluate.ranks import retrieval_report
from sklearn_clip.exceptions import FewShotWarning, InputErrorWarning

# The task names in the results, and the few-shot curve's two learners.
ZERO_SHOT, FEW_SHOT, LINEAR_PROBE, RETRIEVAL = (
    "zero-shot",
    "few-shot",
    "linear probe",
    "retrieval",
)


def _row(task, metric, value, *, prompts=None, shots=None, seed=None):
    return {
        "task": task,
        "prompts": prompts,
        "metric": metric,
        "shots": shots,
        "seed": seed,
        "value": float(value),
    }


def embed_images(handle, images, options):
    """``(embeddings, failed)``: unit-length rows, and the messages of rows
    that could not be read (NaN rows)."""
    embedder = CLIPEmbeddingTransformer(handle, on_error="nan", **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputErrorWarning)
        embeddings = embedder.fit(images).transform(images)
    failed = {}
    for warning in caught:
        if isinstance(warning.message, InputErrorWarning):
            for record in warning.message.errors:
                failed[record["position"]] = (
                    f"image {record['source']} (row {record['index']!r}) could not "
                    f"be read ({record['error']}: {record['message']}); it is left out"
                )
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return embeddings, failed


def embed_texts(handle, texts, options):
    """Unit-length embeddings of ``texts``."""
    embedder = CLIPEmbeddingTransformer(handle, modality="text", **options)
    return embedder.fit(list(texts)).transform(list(texts))


def zero_shot(handle, images, labels, classes, templates, name, options):
    """Top-1, top-5 (with more than five classes) and balanced accuracy."""
    classifier = CLIPZeroShotClassifier(
        handle, candidate_labels=list(classes), templates=templates, **options
    ).fit(None)
    scores = classifier.decision_function(images)
    if scores.ndim == 1:  # two classes: scikit-learn's one score of the second
        scores = np.column_stack([-scores, scores])
    predicted = classifier.classes_[scores.argmax(axis=1)]
    rows = [
        _row(ZERO_SHOT, "top-1", accuracy_score(labels, predicted), prompts=name),
        _row(
            ZERO_SHOT,
            "balanced",
            balanced_accuracy_score(labels, predicted),
            prompts=name,
        ),
    ]
    if len(classifier.classes_) > 5:
        top5 = top_k_accuracy_score(labels, scores, k=5, labels=classifier.classes_)
        rows.insert(1, _row(ZERO_SHOT, "top-5", top5, prompts=name))
    return rows


def few_shot_split(labels, shots, random_state=None):
    """Draw the rows to learn from (``shots`` per class) and those to test on.

    Each class's ``shots`` training images are drawn without replacement by
    ``numpy.random.default_rng(random_state)``, class by class in sorted
    order; its other images are the test rows. A class with ``shots`` images
    or fewer has none to test on: it is left out of both.

    Parameters
    ----------
    labels : array-like of shape (n_images,)
        The class of each image.
    shots : int
        Training images per class.
    random_state : int, default=None
        Seed of the draw.

    Returns
    -------
    train : ndarray of int
        Sorted rows to learn from.
    test : ndarray of int
        Sorted rows to test on.
    left_out : list
        The classes with too few images.

    Examples
    --------
    >>> from sklearn_clip.evaluate import few_shot_split
    >>> train, test, left_out = few_shot_split(["a", "a", "a", "b", "b", "c"], 1, 0)
    >>> len(train), len(test), left_out
    (2, 3, ['c'])
    """
    labels = np.asarray(labels, dtype=object)
    rng = np.random.default_rng(random_state)
    train, test, left_out = [], [], []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) <= shots:
            left_out.append(label)
            continue
        chosen = rng.choice(rows, size=shots, replace=False)
        train.extend(chosen)
        test.extend(np.setdiff1d(rows, chosen))
    return np.sort(train).astype(int), np.sort(test).astype(int), left_out


def few_shot_curve(handle, images, labels, embeddings, classes, templates, *,
                   shots, seeds, options, problems):  # fmt: skip
    """Accuracy of the few-shot classifier and of a linear probe per shot count.

    At each shot count and seed: the rows of :func:`few_shot_split`;
    ``CLIPFewShotClassifier(handle, candidate_labels=classes,
    templates=templates, random_state=seed)`` fitted on the training images
    and scored on the test images; ``LogisticRegression(max_iter=1000,
    random_state=seed)`` fitted and scored on their embeddings.
    """
    rows = []
    for count in shots:
        for seed in seeds:
            train, test, left_out = few_shot_split(labels, count, seed)
            if left_out and seed == seeds[0]:
                problems.append(
                    f"{count}-shot: classes {[str(c) for c in left_out]} have "
                    f"{count} images or fewer, so none to test on; they are left out"
                )
            if len(np.unique(labels[train])) < 2:
                continue
            clf = CLIPFewShotClassifier(
                handle,
                candidate_labels=list(classes),
                templates=templates,
                random_state=seed,
                **options,
            )
            with warnings.catch_warnings():
                # One image per class cannot be cross-validated: the
                # classifier's documented fallback, not news at each seed.
                warnings.simplefilter("ignore", FewShotWarning)
                clf.fit([images[i] for i in train], labels[train])
            accuracy = clf.score([images[i] for i in test], labels[test])
            probe = LogisticRegression(max_iter=1000, random_state=seed)
            probe.fit(embeddings[train], labels[train])
            probed = probe.score(embeddings[test], labels[test])
            where = {"shots": count, "seed": seed}
            rows.append(_row(FEW_SHOT, "top-1", accuracy, prompts=None, **where))
            rows.append(_row(LINEAR_PROBE, "top-1", probed, **where))
    return rows


def retrieval(handle, image_embeddings, captions, pairs, *, k, ties, options):
    """Recall@k, mean rank and MRR, both directions, over several captions per image."""
    texts = embed_texts(handle, captions, options)
    report = retrieval_report(image_embeddings, texts, pairs, k=k, ties=ties)
    return [_row(RETRIEVAL, metric, value) for metric, value in report.items()]
