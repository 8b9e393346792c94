"""CLIPNearestNeighbors against brute-force cosine search over the embeddings."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.neighbors import NearestNeighbors

from sklearn_clip import CLIPEmbeddingTransformer, CLIPNearestNeighbors
from sklearn_clip.exceptions import InputErrorWarning


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return list(rng.integers(0, 255, (n, 24, 24, 3), dtype=np.uint8))


TEXTS = [
    f"a {c} {s} number {i}"
    for i in range(5)
    for c in ("red", "blue")
    for s in ("circle", "square")
]


def unit_rows(n, d=32, seed=0):
    rows = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force(collection, queries, k):
    distances = 1 - queries @ collection.T
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, 1), order


def assert_same_search(searcher, collection, queries, k, X=None, **kwargs):
    """kneighbors(X) equals brute force of the query embeddings in the collection."""
    X = queries if X is None else X
    distances, indices = searcher.kneighbors(X, k, **kwargs)
    expected_d, expected_i = brute_force(collection, queries, k)
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_allclose(distances, np.clip(expected_d, 0, 2), atol=1e-6, rtol=0)


@pytest.mark.parametrize("n", [1, 2, 13])
def test_image_collection_text_and_image_queries(tiny_clip, n):
    collection = images(n)
    searcher = CLIPNearestNeighbors(tiny_clip, n_neighbors=min(n, 3)).fit(collection)
    embedded = CLIPEmbeddingTransformer(tiny_clip).fit(collection).transform(collection)
    text_queries = CLIPEmbeddingTransformer(tiny_clip, modality="text").fit_transform(
        TEXTS
    )
    image_queries = images(4, seed=1)
    image_embeds = CLIPEmbeddingTransformer(tiny_clip).fit_transform(image_queries)
    k = min(n, 3)
    assert_same_search(
        searcher, embedded, text_queries, k, X=TEXTS, query_modality="text"
    )
    assert_same_search(
        searcher, embedded, image_embeds, k, X=image_queries, query_modality="image"
    )
    assert searcher.kneighbors(
        image_queries, return_distance=False, query_modality="image"
    ).shape == (4, k)


def test_partial_fit_appends_without_re_embedding(tiny_clip, monkeypatch):
    first, second = images(7), images(5, seed=2)
    searcher = CLIPNearestNeighbors(tiny_clip).fit(first)
    encoded = []
    original = CLIPNearestNeighbors._encode_rows
    monkeypatch.setattr(
        CLIPNearestNeighbors,
        "_encode_rows",
        lambda self, X, **kw: encoded.append(len(X)) or original(self, X, **kw),
    )
    searcher.partial_fit(second)
    assert encoded == [5] and searcher.n_samples_fit_ == 12
    embedded = CLIPEmbeddingTransformer(tiny_clip).fit_transform(first + second)
    queries = CLIPEmbeddingTransformer(tiny_clip, modality="text").fit_transform(TEXTS)
    assert_same_search(searcher, embedded, queries, 12, X=TEXTS, query_modality="text")


def test_text_collection(tiny_clip):
    searcher = CLIPNearestNeighbors(tiny_clip, modality="text").fit(TEXTS[:10])
    searcher.partial_fit(TEXTS[10:])
    embedded = CLIPEmbeddingTransformer(tiny_clip, modality="text").fit_transform(TEXTS)
    assert_same_search(searcher, embedded, embedded[:3], 5, X=TEXTS[:3])


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_embedding_collection_of_5000_rows_with_appends(dtype):
    collection, queries = unit_rows(5000), unit_rows(20, seed=1)
    searcher = CLIPNearestNeighbors(
        modality="embedding", embedding_dtype=dtype, n_neighbors=10
    ).fit(collection[:3000])
    searcher.partial_fit(collection[3000:4000]).partial_fit(collection[4000:])
    # The search is over the rows as stored: the given ones, rounded.
    stored = searcher.embeddings_.astype(np.float32)
    assert searcher.embeddings_.dtype == dtype
    np.testing.assert_allclose(
        stored, collection, atol=1e-3 if dtype == "float16" else 1e-7
    )
    assert_same_search(searcher, stored, queries, 10)


def test_matches_scikit_learn_cosine_neighbours():
    collection, queries = unit_rows(300), unit_rows(5, seed=1)
    ours = CLIPNearestNeighbors(modality="embedding").fit(collection)
    theirs = NearestNeighbors(metric="cosine", algorithm="brute").fit(collection)
    d1, i1 = ours.kneighbors(queries, 7)
    d2, i2 = theirs.kneighbors(queries, 7)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(d1, d2, atol=1e-6)


@pytest.mark.parametrize("mode", ["connectivity", "distance"])
def test_kneighbors_graph_equals_scikit_learns(mode):
    collection, queries = unit_rows(300), unit_rows(5, seed=1)
    ours = CLIPNearestNeighbors(modality="embedding", n_neighbors=7).fit(collection)
    theirs = NearestNeighbors(n_neighbors=7, metric="cosine", algorithm="brute")
    expected = theirs.fit(collection).kneighbors_graph(queries, mode=mode)
    graph = ours.kneighbors_graph(queries, mode=mode)
    assert graph.shape == expected.shape == (5, 300) and graph.format == "csr"
    np.testing.assert_allclose(graph.toarray(), expected.toarray(), atol=1e-6)
    with pytest.raises(ValueError, match="mode must be one of"):
        ours.kneighbors_graph(queries, mode="weights")


def test_radius_neighbors_is_brute_force():
    collection, queries = unit_rows(400, d=8), unit_rows(6, d=8, seed=1)
    searcher = CLIPNearestNeighbors(modality="embedding", radius=0.4).fit(collection)
    distances, indices = searcher.radius_neighbors(queries)
    all_d = 1 - queries @ collection.T
    for q in range(len(queries)):
        expected = np.flatnonzero(all_d[q] <= np.float32(0.4) + 1e-7)
        expected = expected[np.argsort(all_d[q, expected], kind="stable")]
        np.testing.assert_array_equal(indices[q], expected)
        np.testing.assert_allclose(distances[q], all_d[q, expected], atol=1e-6)
    assert len(searcher.radius_neighbors(queries, radius=0.0)[1][0]) == 0


def test_unreadable_rows_are_reported_and_never_matched(tiny_clip, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    good = images(4)
    collection = [good[0], str(bad), *good[1:]]
    searcher = CLIPNearestNeighbors(tiny_clip, on_error="nan", n_neighbors=4)
    with pytest.warns(UserWarning, match="could not be read"):
        searcher.fit(collection)
    assert [r["position"] for r in searcher.input_errors_] == [1]
    assert str(bad) in searcher.input_errors_[0]["source"]
    with pytest.warns(UserWarning):
        searcher.partial_fit([str(bad), good[0]])
    assert [r["position"] for r in searcher.input_errors_] == [1, 5]
    indices = searcher.kneighbors(good, return_distance=False, query_modality="image")
    assert not {1, 5} & set(indices.ravel().tolist())
    with pytest.raises(ValueError, match="from 1 to 5"):
        searcher.kneighbors(good, 6, query_modality="image")
    # An unreadable query: distance inf and index -1, reported, nothing else hit.
    with pytest.warns(InputErrorWarning) as caught:
        d, i = searcher.kneighbors([str(bad), good[1]], 2, query_modality="image")
    assert np.all(i[0] == -1) and np.all(np.isinf(d[0])) and i[1, 0] == 2
    [warning] = [w.message for w in caught if w.category is InputErrorWarning]
    assert [r["position"] for r in warning.errors] == [0]
    assert not hasattr(searcher, "query_errors_")
    assert [r["position"] for r in searcher.input_errors_] == [1, 5]
    # In the neighbours graph, an unreadable query has an empty row.
    with pytest.warns(InputErrorWarning):
        graph = searcher.kneighbors_graph(
            [str(bad), good[1]], 2, query_modality="image"
        )
    assert graph.getnnz(axis=1).tolist() == [0, 2] and graph.shape == (2, 7)


def test_find_duplicates_of_image_copies(tiny_clip):
    originals = images(6)
    collection = [*originals, originals[2].copy(), originals[4].copy(), originals[2]]
    searcher = CLIPNearestNeighbors(tiny_clip).fit(collection)
    groups = searcher.find_duplicates(threshold=0.9999)
    assert [g.tolist() for g in groups] == [[2, 6, 8], [4, 7]]


def test_pickle_keeps_embeddings_not_weights(tiny_clip_path, tmp_path):
    searcher = CLIPNearestNeighbors(tiny_clip_path, cache_dir=tmp_path).fit(images(5))
    before = searcher.kneighbors(TEXTS[:2], 3, query_modality="text")
    state = pickle.dumps(searcher)
    assert len(state) < 100_000  # the tiny model's weights alone are larger
    loaded = pickle.loads(state)
    np.testing.assert_array_equal(loaded.embeddings_, searcher.embeddings_)
    after = loaded.kneighbors(TEXTS[:2], 3, query_modality="text")
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0], before[0], atol=1e-6)


def test_fit_reads_the_embedding_cache(tiny_clip, image_files, tmp_path, monkeypatch):
    collection = [str(path) for path in image_files.values()]
    first = CLIPNearestNeighbors(tiny_clip, cache_dir=tmp_path).fit(collection)
    from sklearn_clip._encoding import encode as _encode

    def fail(*args, **kwargs):
        raise AssertionError("the cached rows were encoded again")

    monkeypatch.setattr(_encode, "_encode_image_rows", fail)
    second = clone(first).fit(collection)
    np.testing.assert_array_equal(second.embeddings_, first.embeddings_)


def test_faiss_index_finds_most_true_neighbours_and_pickles():
    collection, queries = unit_rows(2000), unit_rows(50, seed=1)
    searcher = CLIPNearestNeighbors(modality="embedding", index="faiss").fit(
        collection[:1500]
    )
    searcher.partial_fit(collection[1500:])
    _, indices = searcher.kneighbors(queries, 10)
    _, exact = brute_force(collection, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(indices, exact)])
    assert recall >= 0.9
    loaded = pickle.loads(pickle.dumps(searcher))
    np.testing.assert_array_equal(loaded.kneighbors(queries, 10)[1], indices)


def test_find_duplicates_with_the_index_verifies_every_pair():
    rows = unit_rows(3000, d=64)
    copies = rows[:40] + 0.01 * unit_rows(40, d=64, seed=3)
    collection = np.concatenate([rows, copies])
    exact = CLIPNearestNeighbors(modality="embedding").fit(collection)
    approximate = CLIPNearestNeighbors(modality="embedding", index="faiss").fit(
        collection
    )
    expected = [[i, 3000 + i] for i in range(40)]
    assert [g.tolist() for g in exact.find_duplicates(0.99)] == expected
    assert [g.tolist() for g in approximate.find_duplicates(0.99)] == expected


def test_parameter_and_input_errors():
    searcher = CLIPNearestNeighbors(modality="embedding").fit(unit_rows(3))
    with pytest.raises(ValueError, match="shape"):
        searcher.kneighbors(unit_rows(2, d=5), 2)
    with pytest.raises(ValueError, match="all zeros"):
        CLIPNearestNeighbors(modality="embedding").fit(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="index"):
        CLIPNearestNeighbors(modality="embedding", index="annoy").fit(unit_rows(3))
    with pytest.raises(ValueError, match="threshold"):
        searcher.find_duplicates(threshold=1.5)
    with pytest.raises(ValueError, match="query_modality"):
        searcher.kneighbors(unit_rows(2), 2, query_modality="audio")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert searcher.kneighbors(unit_rows(2), 3)[1].shape == (2, 3)
