"""``CLIPNearestNeighbors(index="lancedb")``: the collection in a LanceDB table.

Answers equal the in-memory exact searcher's (without an IVF index the table
is scanned exactly; with one, recall@10 against exact search stays >= 0.95
thanks to re-ranking); the table is appended to as rows are embedded, fed by
the ``embed`` command's shards, reopened by another process that embeds
nothing, and refused when another model wrote it.
"""

import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sklearn_clip import CLIPNearestNeighbors, skops_trusted_types
from sklearn_clip._retrieval import lance_searcher
from sklearn_clip.cli import main as cli_main
from tests.conftest import noise_pngs

pytest.importorskip("lancedb")
sio = pytest.importorskip("skops.io")

TEXTS = ["a red square", "a blue circle", "noise"]
ON_CPU = {"device": "cpu", "dtype": "float32"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lance-images")
    return noise_pngs(folder, [(10 + i % 7, 12) for i in range(30)])


def _table(tmp_path, **options):
    return {"path": str(tmp_path / "db"), **options}


def _assert_same_answers(got, expected):
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_allclose(got[0], expected[0], atol=1e-6)


def test_a_table_answers_as_the_exact_searcher_and_stores_the_paths(
    tiny_clip_path, files, tmp_path
):
    options = _table(tmp_path, chunk_size=7)  # appended in five chunks
    search = CLIPNearestNeighbors(
        tiny_clip_path, index="lancedb", index_options=options, n_neighbors=4, **ON_CPU
    ).fit(files)
    exact = CLIPNearestNeighbors(tiny_clip_path, n_neighbors=4, **ON_CPU).fit(files)
    assert search.n_samples_fit_ == 30 and not hasattr(search, "embeddings_")
    for queries, modality in [(TEXTS, "text"), (files[3:6], "image")]:
        _assert_same_answers(
            search.kneighbors(queries, query_modality=modality),
            exact.kneighbors(queries, query_modality=modality),
        )
    rows = search.kneighbors(TEXTS, query_modality="text")[1]
    np.testing.assert_array_equal(search.paths_[rows], np.array(files)[rows])
    assert search.paths_[int(rows[0, 0])] == files[rows[0, 0]]
    # A pickle or a skops file points at the table; skops trusts what it holds.
    data = sio.dumps(search)
    assert set(sio.get_untrusted_types(data=data)) <= set(skops_trusted_types())
    for again in (
        pickle.loads(pickle.dumps(search)),
        sio.loads(data, trusted=skops_trusted_types()),
    ):
        answers = again.kneighbors(TEXTS, query_modality="text")
        _assert_same_answers(answers, exact.kneighbors(TEXTS, query_modality="text"))
        assert again.paths_[rows].tolist() == search.paths_[rows].tolist()

    search.partial_fit(files[:2])  # rows 30 and 31: copies of rows 0 and 1
    distances, rows = search.kneighbors(files[:1], n_neighbors=2)
    assert sorted(rows[0]) == [0, 30] and distances.max() < 1e-6
    assert search.n_samples_fit_ == 32


def test_another_process_searches_the_table_without_embedding_it(
    tiny_clip_path, files, tmp_path
):
    options = _table(tmp_path)
    exact = CLIPNearestNeighbors(tiny_clip_path, n_neighbors=3, **ON_CPU).fit(files)
    CLIPNearestNeighbors(
        tiny_clip_path, index="lancedb", index_options=options, **ON_CPU
    ).fit(files)
    # The images are gone: a process that embedded them again would fail.
    moved = tmp_path / "moved"
    shutil.copytree(os.path.dirname(files[0]), moved)
    shutil.rmtree(os.path.dirname(files[0]))
    try:
        code = (
            "import json, sys\n"
            "from sklearn_clip import CLIPNearestNeighbors\n"
            "model, options = sys.argv[1], json.loads(sys.argv[2])\n"
            "texts = sys.argv[3:]\n"
            "search = CLIPNearestNeighbors(model, index='lancedb', n_neighbors=3,\n"
            "    index_options=options, device='cpu', dtype='float32').fit(None)\n"
            "d, rows = search.kneighbors(texts, query_modality='text')\n"
            "paths = search.paths_[rows].tolist()\n"
            "found = [d.tolist(), rows.tolist(), paths, search.n_samples_fit_]\n"
            "print(json.dumps(found))\n"
        )
        command = [sys.executable, "-c", code, str(tiny_clip_path)]
        command += [json.dumps(options), *TEXTS]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    finally:
        shutil.copytree(moved, os.path.dirname(files[0]))
    assert done.returncode == 0, done.stderr[-3000:]
    distances, rows, paths, n_rows = json.loads(done.stdout)
    _assert_same_answers((np.array(distances), np.array(rows)),
                         exact.kneighbors(TEXTS, query_modality="text"))  # fmt: skip
    assert paths == np.array(files)[rows].tolist() and n_rows == len(files)


def test_a_table_of_another_model_is_refused(
    tiny_clip_path, tiny_siglip_path, files, tmp_path
):
    options = _table(tmp_path)
    CLIPNearestNeighbors(
        tiny_clip_path, index="lancedb", index_options=options, **ON_CPU
    ).fit(files[:5])
    other = CLIPNearestNeighbors(
        tiny_siglip_path, index="lancedb", index_options=options, **ON_CPU
    )
    with pytest.raises(ValueError, match="another model.*fingerprint"):
        other.fit(None)
    with pytest.raises(ValueError, match="exists already.*overwrite"):
        CLIPNearestNeighbors(
            tiny_clip_path, index="lancedb", index_options=options, **ON_CPU
        ).fit(files[:5])
    # Vectors in, text out: the table's weights answer, no others.
    vectors = CLIPNearestNeighbors(
        tiny_siglip_path, modality="embedding", index="lancedb", index_options=options
    ).fit(None)
    with pytest.raises(ValueError, match="other weights"):
        vectors.kneighbors(TEXTS, query_modality="text", n_neighbors=2)


def test_a_table_fed_by_embed_shards_checks_their_model(
    tiny_clip_path, tiny_siglip_path, files, tmp_path, float32
):
    shards = tmp_path / "shards"
    command = ["embed", "--model", str(tiny_clip_path), "--device", "cpu"]
    command += ["--images", os.path.dirname(files[0]), "--output", f"{shards}{os.sep}"]
    assert cli_main([*command, "--shard-size", "8"]) == 0
    search = CLIPNearestNeighbors(
        tiny_clip_path, index="lancedb", index_options=_table(tmp_path), **ON_CPU
    ).fit(str(shards))
    exact = CLIPNearestNeighbors(tiny_clip_path, n_neighbors=5, **ON_CPU).fit(files)
    _assert_same_answers(search.kneighbors(TEXTS, query_modality="text"),
                         exact.kneighbors(TEXTS, query_modality="text"))  # fmt: skip
    other = CLIPNearestNeighbors(
        tiny_siglip_path, index="lancedb", index_options=_table(tmp_path / "b")
    )
    with pytest.raises(ValueError, match="shards.*another model"):
        other.fit(str(shards))


def _clustered(n, dim, rng):
    centres = rng.normal(size=(64, dim))
    rows = centres[rng.integers(0, 64, n)] + 0.35 * rng.normal(size=(n, dim))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_the_ivf_index_with_re_ranking_finds_the_exact_neighbours(tmp_path):
    rng = np.random.default_rng(0)
    collection, queries = _clustered(6000, 64, rng), _clustered(100, 64, rng)
    # 16 codes of a byte for 64 dimensions: the compression of the default
    # (dim / 16 bytes) at 256 dimensions and more.
    options = _table(tmp_path, index_min_rows=2000, chunk_size=2500)
    options["num_sub_vectors"] = 16
    search = CLIPNearestNeighbors(
        modality="embedding", index="lancedb", index_options=options, n_neighbors=10
    ).fit(collection)
    assert [i.index_type for i in search._ann.table().list_indices()] == ["IvfPq"]
    exact = CLIPNearestNeighbors(modality="embedding", n_neighbors=10).fit(collection)
    distances, rows = search.kneighbors(queries)
    expected_distances, expected = exact.kneighbors(queries)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, expected)])
    assert recall >= 0.95, recall
    # Re-ranked: a row found gets its exact distance.
    same = rows == expected
    np.testing.assert_allclose(distances[same], expected_distances[same], atol=1e-5)
    search.partial_fit(queries[:3])  # appended rows are found before indexing
    assert search.kneighbors(queries[:3], n_neighbors=1)[1].ravel().tolist() == [
        6000,
        6001,
        6002,
    ]


def test_radius_and_duplicates_over_a_table_answer_as_in_memory(tmp_path, monkeypatch):
    # The scans read blocks of 700 rows from files of 1,000 (appended chunks):
    # blocks of 700 and 300 rows, none aligned with the files.
    monkeypatch.setattr(lance_searcher, "SCAN_ROWS", 700)
    rng = np.random.default_rng(1)
    collection = _clustered(3000, 32, rng)
    copies = collection[[5, 17, 17, 2999]] + 1e-4 * rng.normal(size=(4, 32))
    collection = np.concatenate([collection, copies.astype(np.float32)])
    options = _table(tmp_path, index_min_rows=1000, chunk_size=1000)
    search = CLIPNearestNeighbors(
        modality="embedding", index="lancedb", index_options=options
    ).fit(collection)
    assert search._ann.table().list_indices()  # indexed; both scans are exact
    exact = CLIPNearestNeighbors(modality="embedding").fit(collection)
    queries = _clustered(20, 32, rng)
    # No pair within rounding of the radius, on any CPU's float32 products.
    assert np.abs(1 - queries @ collection.T - 0.55).min() > 1e-5
    got, expected = (
        search.radius_neighbors(queries, 0.55),
        exact.radius_neighbors(queries, 0.55),
    )
    assert sum(len(rows) for rows in expected[1]) > 100
    for distances, rows, want_distances, want_rows in zip(*got, *expected):
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_allclose(distances, want_distances, atol=1e-6)
    groups = [g.tolist() for g in search.find_duplicates(threshold=0.99)]
    assert groups == [g.tolist() for g in exact.find_duplicates(threshold=0.99)]
    assert groups == [[5, 3000], [17, 3001, 3002], [2999, 3003]]


def test_bad_table_settings_are_refused(tmp_path):
    vectors = np.eye(4, dtype=np.float32)
    search = CLIPNearestNeighbors(
        modality="embedding", index="lancedb", index_options=_table(tmp_path)
    ).fit(vectors)
    with pytest.raises(ValueError, match="search_moments .* index='exact'"):
        search.search_moments(vectors, query_modality="embedding")
    with pytest.raises(ValueError, match="n_neighbors must be .* from 1 to 4"):
        search.kneighbors(vectors, n_neighbors=5)
    with pytest.raises(ValueError, match="needs index_options=.*path"):
        CLIPNearestNeighbors(modality="embedding", index="lancedb").fit(vectors)
    with pytest.raises(ValueError, match="unknown index_options"):
        CLIPNearestNeighbors(
            modality="embedding", index="lancedb", index_options={"path": "x", "M": 3}
        ).fit(vectors)
    with pytest.raises(ValueError, match="does not exist"):
        CLIPNearestNeighbors(
            modality="embedding", index="lancedb", index_options=_table(tmp_path / "n")
        ).fit(None)
