"""What tools that save estimators need to know about the package's types."""


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
    classes = [_name(module, name) for module, name in _SAVED_CLASSES]
    from sklearn_clip._classify.few_shot_methods import METHODS

    # The few-shot heads a fitted classifier keeps.
    classes += [f"{c.__module__}.{c.__qualname__}" for c in METHODS.values()]
    return sorted(classes)


# The classes a saved estimator may hold: the estimators and the model handles.
_SAVED_CLASSES = (
    ("sklearn_clip._train.finetuner", "CLIPContrastiveFinetuner"),
    ("sklearn_clip._embedding", "CLIPEmbeddingTransformer"),
    ("sklearn_clip._classify.few_shot", "CLIPFewShotClassifier"),
    ("sklearn_clip._retrieval.neighbors", "CLIPNearestNeighbors"),
    ("sklearn_clip._classify.zero_shot", "CLIPZeroShotClassifier"),
    ("sklearn_clip._encoding.handle", "ModelHandle"),
    ("sklearn_clip._encoding.exported.handle", "ExportedModelHandle"),
)


def _name(module, name):
    """The class's qualified name, as the class itself gives it where it can
    be imported (the modules that need PyTorch cannot, where only exported
    models run)."""
    import importlib

    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError:
        return f"{module}.{name}"
    return f"{cls.__module__}.{cls.__qualname__}"
