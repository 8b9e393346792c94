"""Exact cosine search and near-duplicate grouping over unit-length embeddings.

Everything here is a blocked matrix product: a block of queries against a
block of collection rows at a time, so that memory is bounded by the block
sizes, never by the collection. Collections may be stored as float16 (half
the memory); each block is widened to float32 before the product, because
CPUs have no fast float16 products and float32 keeps distances accurate to
about 1e-7.
"""

import numpy as np
import torch

# Similarities held at once (queries x collection rows), in float32: 64 MiB.
BLOCK_ELEMENTS = 1 << 24
# Collection rows widened to float32 at once: at 512 dimensions, 128 MiB.
MAX_BLOCK_ROWS = 1 << 16
QUERY_BLOCK = 1024


def _blocks(n, size):
    for start in range(0, n, size):
        yield start, min(start + size, n)


def _row_block(n_queries):
    return int(min(MAX_BLOCK_ROWS, max(1024, BLOCK_ELEMENTS // max(n_queries, 1))))


def _as_queries(queries, collection):
    return torch.as_tensor(queries, dtype=torch.float32).to(collection.device)


def _products(collection, queries):
    """Yield ``(first row, similarities)`` of the queries against row blocks."""
    block = _row_block(len(queries))
    for start, stop in _blocks(len(collection), block):
        yield start, queries @ collection[start:stop].float().T


def top_k(collection, queries, k):
    """The ``k`` most similar rows to each query, most similar first.

    Parameters
    ----------
    collection : torch.Tensor of shape (n, d)
        Unit-length rows, float16 or float32, on any device.
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
    >>> import torch
    >>> from sklearn_clip._retrieval.search import top_k
    >>> top_k(torch.eye(3), [[0.6, 0.8, 0.0]], 2)
    (array([[0.8, 0.6]], dtype=float32), array([[1, 0]]))
    """
    queries = _as_queries(queries, collection)
    sims, rows = [], []
    for q0, q1 in _blocks(len(queries), QUERY_BLOCK):
        s, i = _top_k_block(collection, queries[q0:q1], k)
        sims.append(s)
        rows.append(i)
    if not sims:
        return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
    return _tie_ordered(np.concatenate(sims), np.concatenate(rows))


def _top_k_block(collection, queries, k):
    best_s = torch.empty((len(queries), 0), device=queries.device)
    best_i = torch.empty((len(queries), 0), dtype=torch.int64, device=queries.device)
    for start, sims in _products(collection, queries):
        s, i = sims.topk(min(k, sims.shape[1]), dim=1)
        # Merge the block's best with the best so far; keep the k largest.
        s, i = torch.cat([best_s, s], dim=1), torch.cat([best_i, i + start], dim=1)
        order = s.argsort(dim=1, descending=True, stable=True)[:, :k]
        best_s, best_i = s.gather(1, order), i.gather(1, order)
    return best_s.cpu().numpy(), best_i.cpu().numpy()


def _tie_ordered(sims, rows):
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
    >>> import torch
    >>> from sklearn_clip._retrieval.search import within
    >>> within(torch.eye(3), [[0.6, 0.8, 0.0]], 0.7)
    ([array([0.8], dtype=float32)], [array([1])])
    """
    queries = _as_queries(queries, collection)
    found = [([], []) for _ in range(len(queries))]
    for q0, q1 in _blocks(len(queries), QUERY_BLOCK):
        for start, sims in _products(collection, queries[q0:q1]):
            q, r = torch.nonzero(sims >= min_similarity, as_tuple=True)
            values = sims[q, r].cpu().numpy()
            q, r = q.cpu().numpy(), r.cpu().numpy() + start
            for query in np.unique(q):
                hit = q == query
                found[q0 + query][0].append(values[hit])
                found[q0 + query][1].append(r[hit])
    sims, rows = [], []
    for values, indices in found:
        values = np.concatenate(values) if values else np.empty(0, np.float32)
        indices = np.concatenate(indices) if indices else np.empty(0, np.int64)
        order = np.lexsort((indices, -values))
        sims.append(values[order].astype(np.float32))
        rows.append(indices[order].astype(np.int64))
    return sims, rows


def similar_pairs(collection, threshold):
    """Every pair ``(i, j)``, ``i < j``, with cosine similarity ``>= threshold``.

    Blocks of rows are compared with the rows after them only, so each pair
    is computed once: ``n * n / 2`` dot products, in memory bounded by the
    block sizes.

    Returns
    -------
    ndarray of shape (n_pairs, 2), int64
    """
    pairs = []
    n = len(collection)
    for a0, a1 in _blocks(n, QUERY_BLOCK):
        block = collection[a0:a1].float()
        rest = collection[a0:]
        for start, sims in _products(rest, block):
            i, j = torch.nonzero(sims >= threshold, as_tuple=True)
            i, j = i + a0, j + a0 + start
            keep = i < j
            pairs.append(torch.stack([i[keep], j[keep]], dim=1).cpu().numpy())
    if not pairs:
        return np.empty((0, 2), np.int64)
    return np.concatenate(pairs).astype(np.int64)


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
        left = collection[torch.as_tensor(rows)].float()
        right = collection[torch.as_tensor(other)].float()
        sims = (left * right).sum(dim=1).cpu().numpy()
        hit = sims >= threshold
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
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        return []
    graph = coo_array(
        (np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n)
    )
    _, labels = connected_components(graph, directed=False)
    members = np.unique(pairs)
    order = np.argsort(labels[members], kind="stable")
    members, member_labels = members[order], labels[members][order]
    cuts = np.flatnonzero(np.diff(member_labels)) + 1
    found = np.split(members, cuts)
    return sorted(found, key=lambda group: group[0])


def cosine_distances(similarities):
    # Rounding can put a similarity a hair above 1; distances stay in [0, 2]
    # as scikit-learn's cosine_distances keeps them.
    return np.clip(1.0 - similarities, 0.0, 2.0).astype(np.float32)


def unit_rows(X, dim):
    """Given embeddings -> float32 unit rows; rows with NaN stay NaN (unmatched)."""
    array = np.asarray(X, dtype=np.float32)
    if array.ndim != 2 or (dim is not None and array.shape[1] != dim):
        expected = f"(n, {dim})" if dim is not None else "(n, d)"
        raise ValueError(
            f"embeddings must be a 2-D array of shape {expected}; got shape "
            f"{array.shape}"
        )
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if len(zero):
        raise ValueError(
            f"row {zero[0]} of the embeddings is all zeros and has no direction; "
            "drop it or give it NaN values to keep it out of every search"
        )
    return array / norms
