"""CLIPNearestNeighbors over a LanceDB table: fit, append, reopen and search.

What ``CLIPNearestNeighbors`` does with ``index="lancedb"``, kept here so the
estimator's module only dispatches. ``fit(X)`` creates the table and appends
``X`` to it a chunk at a time; ``X`` may also be a folder of shards written by
``sklearn-clip embed`` (their rows are appended shard by shard, without
embedding them again, once the manifest shows they come from the same
weights). ``fit(None)`` opens the table that is there, after checking that its
tag names the same weights; ``partial_fit(X)`` appends. The collection is
never held in memory: no ``embeddings_``.
"""

import functools
import json
from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from sklearn_clip._retrieval.lance import SHARD_MANIFEST, SHARD_PATTERN, LanceIndex
from sklearn_clip._retrieval.search import (
    check_threshold,
    cosine_distances,
    radius_answers,
    similar_groups_stored,
    within_stored,
)

# Stored rows read at once by the scans (32 MiB of float32 at 512 dimensions).
SCAN_ROWS = 1 << 14


def on_table(method):
    """Decorate a method of ``CLIPNearestNeighbors``: with ``index="lancedb"``
    the function of this module of the same name runs instead."""

    @functools.wraps(method)
    def dispatch(estimator, *args, **kwargs):
        if estimator.index != "lancedb":
            return method(estimator, *args, **kwargs)
        return ON_TABLE[method.__name__](estimator, *args, **kwargs)

    return dispatch


def fit(estimator, X=None, y=None):
    """``fit`` with ``index="lancedb"``: a new table of ``X``, or, for None, the
    table already there."""
    for name in (
        "_handle",
        "_ann",
        "_matchable",
        "embedding_dim_",
        "model_fingerprint_",
    ):
        estimator.__dict__.pop(name, None)
    index = LanceIndex(estimator.index_options)
    estimator.paths_ = TablePaths(index)
    fingerprint = None
    if estimator.modality != "embedding":
        fingerprint = estimator._get_model(reset=True).fingerprint
    if X is None:
        return _reopen(estimator, index, fingerprint)
    estimator._ann = index
    estimator.n_samples_fit_, estimator.input_errors_ = 0, []
    if _is_shard_folder(X):
        _append_shards(estimator, Path(X), fingerprint)
    else:
        if estimator.modality != "embedding":
            estimator._validate_rows(X, kind=estimator.modality, reset=True)
        _append_rows(estimator, X)
    if "embedding_dim_" not in estimator.__dict__:
        raise ValueError("fit(X) with index='lancedb' needs at least one row")
    index.build(estimator.embedding_dim_)
    return estimator


def partial_fit(estimator, X, y=None):
    """Append ``X`` (rows, or a folder of shards) to the table, then index it."""
    if not hasattr(estimator, "n_samples_fit_"):
        return estimator.fit(X)
    if _is_shard_folder(X):
        _append_shards(estimator, Path(X), estimator.__dict__.get("model_fingerprint_"))
    else:
        _append_rows(estimator, X)
    estimator._ann.build(estimator.embedding_dim_)
    return estimator


def _tag(estimator, fingerprint, dim):
    embedding = estimator.modality == "embedding"
    return {
        "model": None if embedding else str(estimator.model),
        "model_fingerprint": fingerprint,
        "modality": estimator.modality,
        "dim": int(dim),
        "dtype": None if embedding else estimator.dtype_,
    }


def _start(estimator, dim, fingerprint):
    """Before the first chunk: the new table, tagged with these weights."""
    if "embedding_dim_" not in estimator.__dict__:
        estimator._ann.create(_tag(estimator, fingerprint, dim))
        estimator.embedding_dim_ = int(dim)


def _chunks(X, size):
    for start in range(0, len(X), size):
        rows = slice(start, start + size)
        yield start, (X.iloc[rows] if hasattr(X, "iloc") else X[rows])


def _append_rows(estimator, X):
    """Embed ``X`` a chunk at a time and append each chunk as it is computed."""
    modality, first = estimator.modality, estimator.n_samples_fit_
    fingerprint = estimator.__dict__.get("model_fingerprint_")
    for offset, chunk in _chunks(X, estimator._ann.options["chunk_size"]):
        known = "embedding_dim_" in estimator.__dict__
        embeddings, errors = estimator._embed(chunk, modality, dim=known)
        _start(estimator, embeddings.shape[1], fingerprint)
        sources = [None] * len(embeddings)
        if modality != "embedding":
            sources = [_source(row) for row in estimator._validate_rows(
                chunk, kind=modality, reset=False)[0]]  # fmt: skip
        estimator._ann.append(first + offset, sources, embeddings)
        for record in errors:
            record["position"] += first + offset
        estimator.input_errors_ = [*estimator.input_errors_, *errors]
    estimator.n_samples_fit_ = first + len(X)


def _source(row):
    """What the ``path`` column holds for an input row: paths and texts only."""
    if isinstance(row, str) or hasattr(row, "__fspath__"):
        return str(row)
    return None


def _is_shard_folder(X):
    return isinstance(X, (str, Path)) and (Path(X) / SHARD_MANIFEST).is_file()


def _append_shards(estimator, folder, fingerprint):
    """Append the rows of an ``embed`` command's shards, one shard at a time."""
    import pyarrow.parquet as pq

    manifest = json.loads((folder / SHARD_MANIFEST).read_text())
    if manifest.get("modality") != estimator.modality:
        raise ValueError(
            f"{str(folder)!r} holds shards of {manifest.get('modality')!r} rows; "
            f"this searcher's modality is {estimator.modality!r}: set "
            "modality to match"
        )
    _check_identity(str(folder), manifest.get("model_fingerprint"), fingerprint)
    for shard in sorted(folder.glob(SHARD_PATTERN)):
        table = pq.read_table(shard, columns=["path", "error", "embedding"])
        column = table.column("embedding").combine_chunks()
        embeddings = column.flatten().to_numpy(zero_copy_only=False)
        embeddings = embeddings.reshape(len(table), -1).astype(np.float32)
        _start(estimator, embeddings.shape[1], fingerprint)
        first, paths = estimator.n_samples_fit_, table.column("path").to_pylist()
        estimator._ann.append(first, paths, embeddings)
        for offset, error in enumerate(table.column("error").to_pylist()):
            if error is not None:
                kind, _, message = error.partition(": ")
                record = {"position": first + offset, "index": first + offset}
                record.update(source=paths[offset], error=kind, message=message)
                estimator.input_errors_ = [*estimator.input_errors_, record]
        estimator.n_samples_fit_ = first + len(table)


def _check_identity(where, held, fingerprint):
    """Refuse rows made by other weights than the searcher's model."""
    if fingerprint is not None and held != fingerprint:
        raise ValueError(
            f"{where} holds embeddings of another model (the fingerprint of "
            f"the weights that made them, {held!r}, is not this model's "
            f"{fingerprint!r}); give the model that made them, or another "
            "index_options['path'] to embed the collection again"
        )


def _reopen(estimator, index, fingerprint):
    """``fit(None)``: the table already there, searched without embedding."""
    if not index.exists():
        raise ValueError(
            f"{index.where} does not exist: fit(X) with the collection's rows "
            "(or a folder of shards) creates it"
        )
    tag = index.tag()
    _check_identity(index.where, tag.get("model_fingerprint"), fingerprint)
    estimator._ann = index
    estimator.embedding_dim_ = int(tag["dim"])
    estimator.n_samples_fit_ = index.n_rows()
    estimator.input_errors_ = []
    if fingerprint is None and tag.get("model_fingerprint") is not None:
        # Vectors in, but text or image queries must use the table's weights.
        estimator.model_fingerprint_ = tag["model_fingerprint"]
    return estimator


def kneighbors(
    estimator, X, n_neighbors=None, return_distance=True, *, query_modality=None
):
    """``kneighbors`` with ``index="lancedb"``: approximate, then re-ranked."""
    check_is_fitted(estimator)
    k = estimator.n_neighbors if n_neighbors is None else n_neighbors
    count = estimator._ann.count()
    if not isinstance(k, Integral) or not 1 <= k <= count:
        raise ValueError(
            f"n_neighbors must be an integer from 1 to {count} (the rows in "
            f"{estimator._ann.where}); got {k!r}"
        )
    queries, failed = estimator._queries(X, query_modality)
    sims, indices = estimator._ann.search(queries, k)
    distances = cosine_distances(sims)
    distances[failed], indices[failed] = np.inf, -1
    return (distances, indices) if return_distance else indices


def radius_neighbors(
    estimator,
    X,
    radius=None,
    return_distance=True,
    sort_results=True,
    *,
    query_modality=None,
):
    """``radius_neighbors`` with ``index="lancedb"``: exact, as in memory; the
    table is read ``SCAN_ROWS`` rows at a time, never held whole."""
    check_is_fitted(estimator)
    radius = estimator.radius if radius is None else radius
    queries, failed = estimator._queries(X, query_modality)
    blocks = estimator._ann.stored(SCAN_ROWS)
    sims, rows = within_stored(blocks, queries, np.float32(1.0 - radius))
    return radius_answers(sims, rows, failed, return_distance)


def find_duplicates(estimator, threshold=0.95):
    """``find_duplicates`` with ``index="lancedb"``: exact, as ``index="exact"``
    in memory; every pair of stored rows is compared, two blocks of
    at most ``SCAN_ROWS`` rows read at a time."""
    check_is_fitted(estimator)
    threshold = check_threshold(threshold)
    return similar_groups_stored(
        functools.partial(estimator._ann.stored, SCAN_ROWS),
        estimator.n_samples_fit_,
        threshold,
    )


class TablePaths:
    """``paths_``: ``paths_[rows]`` is the path stored with each row number
    (an array of the same shape; None for ``-1`` or a row stored without one)."""

    def __init__(self, index):
        self.index = index

    def __getitem__(self, rows):
        found = self.index.sources(rows)
        return found.item() if found.ndim == 0 else found  # one row: its path


ON_TABLE = {
    "fit": fit,
    "partial_fit": partial_fit,
    "kneighbors": kneighbors,
    "radius_neighbors": radius_neighbors,
    "find_duplicates": find_duplicates,
}
