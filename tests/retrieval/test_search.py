"""The search kernels against brute force: top-k, radius, duplicate groups."""

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components

from sklearn_clip._retrieval import search as _search


def unit_rows(n, d=16, seed=0):
    rows = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few rows, so that every merge path runs on small data."""
    monkeypatch.setattr(_search, "BLOCK_ELEMENTS", 64)
    monkeypatch.setattr(_search, "MAX_BLOCK_ROWS", 7)
    monkeypatch.setattr(_search, "QUERY_BLOCK", 5)
    monkeypatch.setattr(_search, "PAIR_BLOCK_ELEMENTS", 30)
    monkeypatch.setattr(_search, "_row_block", lambda n_queries: 7)


def brute_force(collection, queries, k):
    sims = queries @ collection.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, 1), order


@pytest.mark.parametrize("n", [1, 2, 50, 5000])
@pytest.mark.parametrize("blocks", ["default", "small"])
def test_top_k_is_brute_force(n, blocks, request):
    if blocks == "small":
        request.getfixturevalue("small_blocks")
    collection, queries = unit_rows(n), unit_rows(12, seed=1)
    k = min(n, 10)
    sims, rows = _search.top_k(collection, queries, k)
    expected_sims, expected_rows = brute_force(collection, queries, k)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(sims, expected_sims, atol=1e-6, rtol=0)
    assert sims.dtype == np.float32 and rows.dtype == np.int64


def test_top_k_float16_collection_is_search_over_its_rounded_rows(small_blocks):
    collection = unit_rows(300).astype(np.float16)
    queries = unit_rows(4, seed=1)
    sims, rows = _search.top_k(collection, queries, 20)
    expected_sims, expected_rows = brute_force(
        collection.astype(np.float32), queries, 20
    )
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(sims, expected_sims, atol=1e-6, rtol=0)


def test_top_k_orders_ties_by_row(small_blocks):
    # Every row six times; one-hot rows make the tied products exactly equal.
    collection = np.repeat(np.eye(3, dtype=np.float32), 6, axis=0)
    sims, rows = _search.top_k(collection, collection[[0]], 6)
    np.testing.assert_array_equal(
        rows, [np.flatnonzero(np.all(collection == collection[0], 1))]
    )


@pytest.mark.parametrize("n", [1, 40, 2000])
def test_within_is_brute_force(n, small_blocks):
    collection, queries = unit_rows(n, d=4), unit_rows(9, d=4, seed=1)
    sims, rows = _search.within(collection, queries, 0.6)
    products = queries @ collection.T
    for q in range(len(queries)):
        expected = np.flatnonzero(products[q] >= 0.6)
        expected = expected[np.argsort(-products[q, expected], kind="stable")]
        np.testing.assert_array_equal(rows[q], expected)
        np.testing.assert_allclose(sims[q], products[q, expected], atol=1e-6)


def planted(n, n_copies, d=16, noise=0.05, seed=0):
    """Random unit rows, some rows followed by noisy copies of earlier rows."""
    rng = np.random.default_rng(seed)
    rows = unit_rows(n, d, seed)
    originals = rng.choice(n // 2, n_copies)
    targets = rng.choice(np.arange(n // 2, n), n_copies, replace=False)
    rows[targets] = rows[originals] + noise * rng.standard_normal((n_copies, d))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def reference_groups(rows, threshold):
    graph = (rows @ rows.T) >= np.float32(threshold)
    _, labels = connected_components(graph, directed=False)
    found = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    return sorted((g for g in found if len(g) >= 2), key=lambda g: g[0])


@pytest.mark.parametrize("threshold", [0.9, 0.75, 0.7])
def test_duplicate_groups_are_the_connected_components(threshold):
    # 2,000 rows in 16 dimensions: at 0.7 chance pairs join most rows into one
    # chain, at 0.9 the planted copies (some sharing an original) stand alone.
    rows = planted(2000, 300)
    found = _search.similar_groups(rows, threshold)
    expected = reference_groups(rows, threshold)
    assert len(found) == len(expected) > 10
    for group, reference in zip(found, expected):
        np.testing.assert_array_equal(group, reference)


def test_similar_groups_in_small_blocks_equal_the_full_product(small_blocks):
    rows = planted(60, 10, d=4)
    found = _search.similar_groups(rows, 0.8)
    expected = reference_groups(rows, 0.8)
    assert [g.tolist() for g in found] == [g.tolist() for g in expected]


def test_verified_pairs_keep_only_pairs_above_the_threshold():
    rows = planted(200, 20)
    candidates = np.argsort(-(rows @ rows.T), axis=1)[:, :4]
    candidates[:, 3] = -1  # "no neighbour found" entries are skipped
    pairs = _search.verified_pairs(rows, candidates, 0.9)
    sims = np.sum(rows[pairs[:, 0]] * rows[pairs[:, 1]], axis=1)
    assert len(pairs) >= 20 and np.all(sims >= np.float32(0.9))
    assert np.all(pairs[:, 0] < pairs[:, 1])
    assert len(np.unique(pairs, axis=0)) == len(pairs)


def test_no_pairs_no_groups():
    assert _search.groups(5, np.empty((0, 2), np.int64)) == []
    assert _search.similar_groups(np.eye(3, dtype=np.float32), 0.5) == []


def _status_bytes(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


@pytest.mark.slow
def test_exact_search_memory_does_not_grow_with_the_collection():
    # 400,000 x 512 float16 rows (410 MB): the search holds one float32 block
    # of rows and one block of similarities, a few hundred MB at most, whatever
    # the number of rows. VmHWM is reset to the current RSS first (Linux).
    rows = np.empty((400_000, 512), np.float16)
    rng = np.random.default_rng(0)
    for start in range(0, len(rows), 50_000):
        block = rng.standard_normal((50_000, 512), dtype=np.float32)
        rows[start : start + 50_000] = block / np.linalg.norm(block, axis=1)[:, None]
    collection = rows
    queries = unit_rows(100, d=512, seed=1)
    _search.top_k(collection, queries[:2], 10)
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before = _status_bytes("VmRSS")
    _search.top_k(collection, queries, 10)
    _search.similar_groups(collection[:20_000], 0.95)
    assert _status_bytes("VmHWM") - before < 500e6
