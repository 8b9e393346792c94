"""Spark: a fitted estimator over a column of a Spark DataFrame, with ``mapInPandas``.

A fitted estimator pickles without its weights (only where the model comes
from), so Spark ships it to every task cheaply; the first task in each Python
worker process loads the weights and the process-wide model cache serves every
later task of that worker (:func:`~sklearn_clip.model_cache_info` counts the
loads). An estimator whose ``model`` is an export
(:func:`~sklearn_clip.export_model`) runs on workers where PyTorch is not
installed.

Each partition arrives as pandas frames (Arrow batches); each frame goes
through the estimator as it is, and comes back with its own columns, the
output column and an ``error`` column: null for rows that were read, the
reason for rows that could not be (under ``on_error="nan"``: their embedding
is NaN and their prediction null; under ``on_error="raise"`` the first such
row fails the task, and so the job). pyspark is imported only by
:func:`output_schema`; ``import sklearn_clip`` never imports it. The recipe
is one line::

    embeddings = frame.mapInPandas(
        partition_function(embedder), output_schema(frame.schema, embedder)
    )
"""

import warnings

import numpy as np

from sklearn_clip.exceptions import InputErrorWarning

__all__ = ["partition_function", "output_schema"]

#: The methods that can run over a column, and the name of their output column.
OUTPUT_COLUMNS = {
    "transform": "embedding",
    "predict": "prediction",
    "predict_proba": "probabilities",
}


def partition_function(estimator, method="transform", *, column="path", output=None):
    """The function to give ``DataFrame.mapInPandas`` for a fitted estimator.

    Parameters
    ----------
    estimator : fitted estimator
        A :class:`~sklearn_clip.CLIPEmbeddingTransformer` (``"transform"``),
        :class:`~sklearn_clip.CLIPZeroShotClassifier` or
        :class:`~sklearn_clip.CLIPFewShotClassifier` (``"predict"``,
        ``"predict_proba"``).
    method : {"transform", "predict", "predict_proba"}, default="transform"
        The method applied to the column.
    column : str, default="path"
        The input column: image paths or image bytes (Spark's ``binary``, as
        the ``binaryFile`` source's ``content``), or texts for an embedder of
        texts.
    output : str, default=None
        The output column's name; ``"embedding"``, ``"prediction"`` or
        ``"probabilities"`` (as the method) when None.

    Returns
    -------
    callable
        ``function(frames)``: an iterator of pandas frames in, one frame out
        per frame in, with the input's columns, the output column (an array of
        float32 per row for ``"transform"``, an array of float64 ordered as
        ``classes_`` for ``"predict_proba"``, a label for ``"predict"``) and
        ``error`` (null, or why the row could not be read).

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_clip import CLIPEmbeddingTransformer
    >>> from sklearn_clip.spark import partition_function
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> embedder = CLIPEmbeddingTransformer(make_tiny_clip(), modality="text")
    >>> embedder = embedder.fit(["x"])
    >>> function = partition_function(embedder, column="text")
    >>> [frame] = function(iter([pd.DataFrame({"text": ["a cat", "a dog"]})]))
    >>> list(frame.columns), frame["embedding"][0].shape
    (['text', 'embedding', 'error'], (32,))
    """
    if method not in OUTPUT_COLUMNS:
        raise ValueError(
            f"method must be one of {sorted(OUTPUT_COLUMNS)}; got {method!r}"
        )
    output = output or OUTPUT_COLUMNS[method]
    apply = getattr(estimator, method)  # a bound method: fails here if absent

    def function(frames):
        for frame in frames:
            values, errors = _apply(apply, frame[column])
            yield frame.assign(**{output: values, "error": errors})

    return function


def _apply(apply, column):
    """``(output values, error messages)`` of one frame's column."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputErrorWarning)
        values = apply(column.reset_index(drop=True))
    errors = [None] * len(column)
    for warning in caught:
        if issubclass(warning.category, InputErrorWarning):
            for record in warning.message.errors:
                errors[record["position"]] = f"{record['error']}: {record['message']}"
        else:  # every other warning is the user's to see
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    if getattr(values, "ndim", 1) == 2:  # one array per row
        values = list(np.asarray(values))
    return list(values), errors


def output_schema(schema, estimator, method="transform", *, output=None):
    """The Spark schema of :func:`partition_function`'s frames.

    Parameters
    ----------
    schema : pyspark.sql.types.StructType
        The input DataFrame's schema (``frame.schema``).
    estimator : fitted estimator
        As for :func:`partition_function`.
    method : {"transform", "predict", "predict_proba"}, default="transform"
        As for :func:`partition_function`.
    output : str, default=None
        As for :func:`partition_function`.

    Returns
    -------
    pyspark.sql.types.StructType
        The input's fields, then the output column and ``error``.

    Examples
    --------
    >>> from pyspark.sql.types import StringType, StructField, StructType
    >>> from sklearn_clip import CLIPZeroShotClassifier
    >>> from sklearn_clip.spark import output_schema
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> classifier = CLIPZeroShotClassifier(
    ...     make_tiny_clip(), candidate_labels=["cat", "dog"]
    ... ).fit()
    >>> paths = StructType([StructField("path", StringType())])
    >>> output_schema(paths, classifier, "predict").simpleString()
    'struct<path:string,prediction:string,error:string>'
    """
    from pyspark.sql import types

    if method == "transform":
        kind = types.ArrayType(types.FloatType())
    elif method == "predict_proba":
        kind = types.ArrayType(types.DoubleType())
    else:
        kind = _label_type(np.asarray(estimator.classes_).dtype, types)
    output = output or OUTPUT_COLUMNS[method]
    fields = [*schema.fields, types.StructField(output, kind)]
    return types.StructType([*fields, types.StructField("error", types.StringType())])


def _label_type(dtype, types):
    if dtype.kind == "b":
        return types.BooleanType()
    if dtype.kind in "iu":
        return types.LongType()
    if dtype.kind == "f":
        return types.DoubleType()
    return types.StringType()
