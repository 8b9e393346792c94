"""What tools that save estimators need to know about the package's types."""

import importlib

# The classes a saved estimator of the package can hold, by where they live:
# the estimators, the model handle, and the few-shot heads a fitted
# CLIPFewShotClassifier keeps.
_SAVED_CLASSES = {
    "sklearn_clip._classify.few_shot": ("CLIPFewShotClassifier",),
    "sklearn_clip._classify.few_shot_methods": ("LinearHead", "TipHead"),
    "sklearn_clip._classify.zero_shot": ("CLIPZeroShotClassifier",),
    "sklearn_clip._embedding": ("CLIPEmbeddingTransformer",),
    "sklearn_clip._encoding.handle": ("ModelHandle",),
    "sklearn_clip._retrieval.neighbors": ("CLIPNearestNeighbors",),
    "sklearn_clip._train.finetuner": ("CLIPContrastiveFinetuner",),
}


def skops_trusted_types():
    """The package's types, for skops' ``trusted`` list (and mlflow's).

    skops reads only the types it is told to trust. A file that holds an
    estimator of this package holds these classes (the estimators and their
    model handles, whose saved state is plain values: a path with the
    weights' fingerprint, or the weights' files), besides scikit-learn's and
    numpy's own types, which skops trusts by default.

    Returns
    -------
    list of str
        Fully qualified class names, sorted.

    Examples
    --------
    >>> import skops.io as sio
    >>> from sklearn_clip import CLIPZeroShotClassifier, skops_trusted_types
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> clf = CLIPZeroShotClassifier(make_tiny_clip(), candidate_labels=["a", "b"])
    >>> data = sio.dumps(clf.fit(None))
    >>> set(sio.get_untrusted_types(data=data)) <= set(skops_trusted_types())
    True
    >>> clf = sio.loads(data, trusted=skops_trusted_types())
    """
    names = []
    for module, classes in _SAVED_CLASSES.items():
        for name in classes:
            cls = getattr(importlib.import_module(module), name)
            names.append(f"{cls.__module__}.{cls.__qualname__}")
    return sorted(names)
