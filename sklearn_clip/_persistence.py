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
    # Imported on call: the estimators load torch, which importing the
    # package defers.
    from sklearn_clip._classify.few_shot import CLIPFewShotClassifier
    from sklearn_clip._classify.few_shot_methods import METHODS
    from sklearn_clip._classify.zero_shot import CLIPZeroShotClassifier
    from sklearn_clip._embedding import CLIPEmbeddingTransformer
    from sklearn_clip._encoding.handle import ModelHandle
    from sklearn_clip._retrieval.neighbors import CLIPNearestNeighbors
    from sklearn_clip._train.finetuner import CLIPContrastiveFinetuner

    classes = [
        CLIPContrastiveFinetuner,
        CLIPEmbeddingTransformer,
        CLIPFewShotClassifier,
        CLIPNearestNeighbors,
        CLIPZeroShotClassifier,
        ModelHandle,
        *METHODS.values(),  # the few-shot heads a fitted classifier keeps
    ]
    return sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in classes)
