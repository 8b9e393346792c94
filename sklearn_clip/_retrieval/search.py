"""Exact cosine search and near-duplicate grouping over unit-length embeddings.

Everything here is a blocked NumPy matrix product: a block of queries
against a block of collection rows at a time, so that memory is bounded by
the block sizes, never by the collection. NumPy, not PyTorch, so that search
runs wherever the embeddings came from (an exported model serves without
PyTorch installed). Collections may be stored as float16 (half
the memory); each block is widened to float32 before the product, because
CPUs have no fast float16 products and float32 keeps distances accurate to
about 1e-7.

Thresholds are compared with the rounding of the stored rows allowed for
(:func:`reaches`): a float32 unit row's product with itself can be
0.99999994, so ``similarity >= 1.0`` would miss a byte-identical copy.
"""

from numbers import Real

import numpy as np

# Similarities held at once (queries x collection rows), in float32: 64 MiB.
BLOCK_ELEMENTS = 1 << 24
# Collection rows widened to float32 at once: at 512 dimensions, 128 MiB.
MAX_BLOCK_ROWS = 1 << 16
QUERY_BLOCK = 1024
# Similarities held at once by the duplicate search (4 MiB), with their pairs.
PAIR_BLOCK_ELEMENTS = 1 << 20
# Neighbours of each row an approximate index proposes as its near-copies.
DUPLICATE_CANDIDATES = 16

# How far rounding can move a stored unit row's similarity below its true
# value: float32 products are off by about 1e-7; a float16 row's length is
# off by up to 2 ** -11 per component, about 1e-3 for its product with itself.
TOLERANCE = {np.dtype(np.float32): 1e-6, np.dtype(np.float16): 1e-3}


def reaches(sims, threshold, dtype):
    """Whether each similarity reaches ``threshold``, rounding of ``dtype`` allowed."""
    return sims >= threshold - TOLERANCE[np.dtype(dtype)]


def _blocks(n, size):
    for start in range(0, n, size):
        yield start, min(start + size, n)


def _row_block(n_queries):
    return int(min(MAX_BLOCK_ROWS, max(1024, BLOCK_ELEMENTS // max(n_queries, 1))))


def _as_queries(queries):
    return np.asarray(queries, dtype=np.float32)


def _products(collection, queries):
    """Yield ``(first row, similarities)`` of the queries against row blocks."""
    block = _row_block(len(queries))
    for start, stop in _blocks(len(collection), block):
        yield start, queries @ collection[start:stop].astype(np.float32).T


def top_k(collection, queries, k):
    """The ``k`` most similar rows to each query, most similar first.

    Parameters
    ----------
    collection : ndarray of shape (n, d)
        Unit-length rows, float16 or float32.
    queries : array-like of shape (m, d)
        Unit-length queries.
    k : int
        How many rows to return per query, at most ``n``.

    Returns
    -------
    similarities : ndarray of shape (m, k), float32
    indices : ndarray of shape (m, k), int64
        Rows of ``collection``; equal similarities are ordered by row.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip._retrieval.search import top_k
    >>> top_k(np.eye(3, dtype=np.float32), [[0.6, 0.8, 0.0]], 2)
    (array([[0.8, 0.6]], dtype=float32), array([[1, 0]]))
    """
    queries = _as_queries(queries)
    sims, rows = [], []
    for q0, q1 in _blocks(len(queries), QUERY_BLOCK):
        s, i = _top_k_block(collection, queries[q0:q1], k)
        sims.append(s)
        rows.append(i)
    if not sims:
        return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
    return tie_ordered(np.concatenate(sims), np.concatenate(rows))


def _top_k_block(collection, queries, k):
    best_s = np.empty((len(queries), 0), np.float32)
    best_i = np.empty((len(queries), 0), np.int64)
    for start, sims in _products(collection, queries):
        keep = min(k, sims.shape[1])
        # The block's k largest (in any order), merged with the best so far;
        # tie_ordered puts the final k in order.
        i = np.argpartition(-sims, keep - 1, axis=1)[:, :keep]
        s = np.take_along_axis(sims, i, 1)
        s, i = np.concatenate([best_s, s], 1), np.concatenate([best_i, i + start], 1)
        best_s, best_i = tie_ordered(s, i)
        best_s, best_i = best_s[:, :k], best_i[:, :k]
    return best_s, best_i


def tie_ordered(sims, rows):
    """Sort each query's hits by similarity, then by row, so ties are stable."""
    order = np.lexsort((rows, -sims), axis=1)
    return np.take_along_axis(sims, order, 1), np.take_along_axis(rows, order, 1)


def within(collection, queries, min_similarity):
    """Every row with similarity ``>= min_similarity`` to each query, best first.

    Returns
    -------
    similarities, indices : list of ndarray
        One float32 and one int64 array per query.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip._retrieval.search import within
    >>> within(np.eye(3, dtype=np.float32), [[0.6, 0.8, 0.0]], 0.7)
    ([array([0.8], dtype=float32)], [array([1])])
    """
    found = [([], []) for _ in range(len(queries))]
    _gather_within(found, collection, _as_queries(queries), min_similarity)
    return _best_first(found)


def within_stored(blocks, queries, min_similarity):
    """:func:`within` over a collection read a block at a time.

    ``blocks`` yields ``(row numbers, embeddings)``; the indices returned are
    those row numbers. The answers equal :func:`within` over all the blocks
    stacked, and only one block is held at a time.
    """
    queries = _as_queries(queries)
    found = [([], []) for _ in range(len(queries))]
    for numbers, block in blocks:
        _gather_within(found, block, queries, min_similarity, numbers)
    return _best_first(found)


def _gather_within(found, collection, queries, min_similarity, numbers=None):
    """Append each query's hits in ``collection`` to ``found[query]``."""
    for q0, q1 in _blocks(len(queries), QUERY_BLOCK):
        for start, sims in _products(collection, queries[q0:q1]):
            hit = reaches(sims, min_similarity, collection.dtype)
            q, r = np.nonzero(hit)
            values = sims[q, r]
            r = r + start if numbers is None else np.asarray(numbers)[r + start]
            for query in np.unique(q):
                hit = q == query
                found[q0 + query][0].append(values[hit])
                found[q0 + query][1].append(r[hit])


def _best_first(found):
    """Each query's gathered hits, most similar first, ties by row."""
    sims, rows = [], []
    for values, indices in found:
        values = np.concatenate(values) if values else np.empty(0, np.float32)
        indices = np.concatenate(indices) if indices else np.empty(0, np.int64)
        order = np.lexsort((indices, -values))
        sims.append(values[order].astype(np.float32))
        rows.append(indices[order].astype(np.int64))
    return sims, rows


def similar_groups(collection, threshold):
    """Groups of rows joined by chains of similarities ``>= threshold``.

    Blocks of rows are compared with the rows after them only, so each pair
    is computed once: ``n * n / 2`` dot products. A block's pairs are merged
    into the groups found so far at once and dropped, so memory is bounded
    by the block (``PAIR_BLOCK_ELEMENTS`` similarities and their pairs, tens
    of MB) and a few arrays of ``n`` integers, however many pairs pass.

    Returns
    -------
    list of ndarray
        As :func:`groups`.
    """
    n = len(collection)
    labels, rows = np.arange(n), np.arange(n)
    for a0, a1 in _blocks(n, QUERY_BLOCK):
        left, right = (rows[a0:a1], collection[a0:a1]), (rows[a0:], collection[a0:])
        labels = _join_similar(labels, left, right, threshold, collection.dtype)
    return _groups_of(labels)


def similar_groups_stored(blocks_from, n, threshold):
    """:func:`similar_groups` over a collection read a block at a time.

    ``blocks_from(start)`` yields the stored rows from the ``start``-th on,
    in blocks of ``(row numbers, embeddings)``, row numbers below ``n``. Each
    block is compared with itself and the rows after it, so the groups equal
    :func:`similar_groups` over all the blocks stacked; two blocks are held
    at a time.
    """
    labels, start = np.arange(n), 0
    for rows, block in blocks_from(0):
        for right in blocks_from(start):
            for a0, a1 in _blocks(len(block), QUERY_BLOCK):
                left = (rows[a0:a1], block[a0:a1])
                labels = _join_similar(labels, left, right, threshold, block.dtype)
        start += len(rows)
    return _groups_of(labels)


def _join_similar(labels, left, right, threshold, dtype):
    """``labels`` once every ``left`` row is joined to the ``right`` rows it
    reaches ``threshold`` with; each side is ``(row numbers, embeddings)``."""
    (left_rows, left), (right_rows, right) = left, right
    left = left.astype(np.float32)
    step = max(1, PAIR_BLOCK_ELEMENTS // len(left))
    for b0, b1 in _blocks(len(right), step):
        sims = left @ right[b0:b1].astype(np.float32).T
        i, j = np.nonzero(reaches(sims, threshold, dtype))
        i, j = left_rows[i], right_rows[b0 + j]
        # Only pairs joining two groups change anything; when most pairs
        # pass, most of them are already in one group.
        new = labels[i] != labels[j]
        if new.any():
            labels = _joined(labels, i[new], j[new])
    return labels


def verified_pairs(collection, candidates, threshold):
    """The candidate pairs whose exact similarity is ``>= threshold``.

    ``candidates`` is an ``(n, k)`` array of neighbour rows per row (from an
    approximate index; ``-1`` for none); each pair's similarity is recomputed
    from the stored embeddings, so no pair below the threshold is kept.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    pairs = []
    for start, stop in _blocks(len(candidates), MAX_BLOCK_ROWS):
        rows = np.repeat(np.arange(start, stop), candidates.shape[1])
        other = candidates[start:stop].ravel()
        keep = (other >= 0) & (other != rows)
        rows, other = rows[keep], other[keep]
        left = collection[rows].astype(np.float32)
        right = collection[other].astype(np.float32)
        hit = reaches((left * right).sum(axis=1), threshold, collection.dtype)
        pairs.append(np.stack([rows[hit], other[hit]], axis=1))
    if not pairs:
        return np.empty((0, 2), np.int64)
    pairs = np.sort(np.concatenate(pairs), axis=1)
    return np.unique(pairs, axis=0)


def groups(n, pairs):
    """Connected components of size >= 2 of the graph with the given edges.

    Returns
    -------
    list of ndarray
        Each group's rows in increasing order; groups ordered by first row.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip._retrieval.search import groups
    >>> groups(6, np.array([[0, 3], [3, 5], [1, 2]]))
    [array([0, 3, 5]), array([1, 2])]
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return _groups_of(_joined(np.arange(n), pairs[:, 0], pairs[:, 1]))


def _joined(labels, i, j):
    """Each row's group label (its first row) once ``i[k]``, ``j[k]`` are joined."""
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    n = len(labels)
    # Each row joined to its group's label (its first row) keeps the groups
    # found so far.
    start = np.concatenate([i, np.arange(n)])
    end = np.concatenate([j, labels])
    graph = coo_array((np.ones(len(start), np.int8), (start, end)), shape=(n, n))
    component = connected_components(graph, directed=False)[1]
    first_rows = np.unique(component, return_index=True)[1]
    return first_rows[component]


def _groups_of(labels):
    """Rows sharing a label, groups of two or more, ordered by first row."""
    shared = np.flatnonzero(np.bincount(labels)[labels] >= 2)
    shared = shared[np.argsort(labels[shared], kind="stable")]
    cuts = np.flatnonzero(np.diff(labels[shared])) + 1
    return sorted(np.split(shared, cuts) if len(shared) else [], key=lambda g: g[0])


def matchable(embeddings):
    """``(collection, rows)``: the rows without NaN, contiguous, and their rows."""
    rows = np.flatnonzero(~np.isnan(embeddings).any(axis=1))
    if len(rows) < len(embeddings):
        embeddings = embeddings[rows]
    return np.ascontiguousarray(embeddings), rows


def cosine_distances(similarities):
    # Rounding can put a similarity a hair above 1; distances stay in [0, 2]
    # as scikit-learn's cosine_distances keeps them.
    return np.clip(1.0 - similarities, 0.0, 2.0).astype(np.float32)


def radius_answers(sims, rows, failed, return_distance):
    """``radius_neighbors``' answers from each query's hits: object arrays of
    distances and rows, empty for a query that ``failed`` to embed."""
    distances = np.empty(len(sims), dtype=object)
    indices = np.empty(len(sims), dtype=object)
    for i, (s, r) in enumerate(zip(sims, rows)):
        keep = slice(0) if failed[i] else slice(None)
        distances[i] = cosine_distances(s[keep])
        indices[i] = np.asarray(r, np.int64)[keep]
    return (distances, indices) if return_distance else indices


def check_threshold(threshold):
    """A duplicate threshold as float32; outside [-1, 1] refused."""
    if not isinstance(threshold, Real) or not -1 <= threshold <= 1:
        raise ValueError(f"threshold must be in [-1, 1]; got {threshold!r}")
    return np.float32(threshold)


def unit_rows(X, dim):
    """Given embeddings -> float32 unit rows.

    Each row is divided by its largest absolute value before it is
    normalised, so that no square overflows (a row of 1e30) or underflows (a
    row of 1e-25) and every finite row keeps its direction. A row that is all
    NaN stays NaN (never matched, like an unreadable image's row); a row with
    an infinite value or some NaN values, or all zeros, is refused.
    """
    array = np.asarray(X)
    if array.ndim != 2 or (dim is not None and array.shape[1] != dim):
        expected = f"(n, {dim})" if dim is not None else "(n, d)"
        raise ValueError(
            f"embeddings must be a 2-D array of shape {expected}; got shape "
            f"{array.shape}"
        )
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    _check_rows(array)
    unit = np.empty(array.shape, np.float32)
    # In float64, in blocks: a row already of unit length comes back unchanged.
    for start, stop in _blocks(len(array), MAX_BLOCK_ROWS):
        block = array[start:stop].astype(np.float64)
        block /= np.abs(block).max(axis=1, keepdims=True)
        unit[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return unit


def _check_rows(array):
    missing = np.isnan(array).all(axis=1)
    broken = np.flatnonzero(~missing & ~np.isfinite(array).all(axis=1))
    if len(broken):
        raise ValueError(
            f"row {broken[0]} of the embeddings has an infinite or NaN value; "
            "fix or drop it, or make the whole row NaN to keep it out of every search"
        )
    zero = np.flatnonzero(~missing & ~array.any(axis=1))
    if len(zero):
        raise ValueError(
            f"row {zero[0]} of the embeddings is all zeros and has no direction; "
            "drop it or give it NaN values to keep it out of every search"
        )
