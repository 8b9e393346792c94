"""Dask: the estimators over a Dask DataFrame of image paths, on worker processes.

Embeddings and zero-shot probabilities computed by two worker processes (with
``map_partitions`` and through ``dask_ml.wrappers.ParallelPostFit``) equal the
in-memory results row for row, and each worker read the weights exactly once,
as its own ``model_cache_info()`` reports.
"""

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sklearn_clip import (
    CLIPEmbeddingTransformer,
    CLIPZeroShotClassifier,
    model_cache_info,
)

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
wrappers = pytest.importorskip("dask_ml.wrappers")

N_FILES = 2_000
N_PARTITIONS = 10
LABELS = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def many_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dask-images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N_FILES):
        path = folder / f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def client():
    # Processes, as on a cluster: each worker has its own model cache. Workers
    # start with the parent's sys.path, so they import this checkout.
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def fitted(tiny_clip_path):
    embedder = CLIPEmbeddingTransformer(tiny_clip_path, device="cpu")
    embedder.set_output(transform="pandas").fit(pd.DataFrame({"path": ["unused"]}))
    classifier = CLIPZeroShotClassifier(
        tiny_clip_path, candidate_labels=LABELS, device="cpu"
    ).fit()
    return embedder, classifier


def _probabilities(frame, classifier):
    # The function a user passes to map_partitions: a frame in, a frame out,
    # with the partition's index, so Dask keeps the rows in order.
    return pd.DataFrame(
        classifier.predict_proba(frame["path"]),
        index=frame.index,
        columns=classifier.classes_,
    )


@pytest.mark.slow  # a minute alone; several on a busy machine
def test_dask_workers_match_in_memory_and_load_once(client, many_files, fitted):
    embedder, classifier = fitted
    frame = pd.DataFrame({"path": many_files})
    expected_embeddings = embedder.transform(frame[["path"]]).to_numpy()
    expected_proba = classifier.predict_proba(frame["path"])
    paths = dd.from_pandas(frame, npartitions=N_PARTITIONS)

    embedding_meta = pd.DataFrame(
        columns=embedder.get_feature_names_out(), dtype=np.float32
    )
    embeddings = paths[["path"]].map_partitions(embedder.transform, meta=embedding_meta)
    proba_meta = pd.DataFrame(columns=classifier.classes_, dtype=np.float64)
    proba = paths.map_partitions(_probabilities, classifier, meta=proba_meta)
    wrapped_embedder = wrappers.ParallelPostFit(embedder, transform_meta=embedding_meta)
    wrapped_classifier = wrappers.ParallelPostFit(
        classifier, predict_proba_meta=np.empty((0, len(LABELS)))
    )
    got_embeddings, got_proba = client.compute([embeddings, proba], sync=True)
    # ParallelPostFit builds its own graphs: computed on their own.
    post_fit_embeddings, post_fit_proba = client.compute(
        [
            wrapped_embedder.transform(paths[["path"]]),
            wrapped_classifier.predict_proba(paths[["path"]]),
        ],
        sync=True,
    )
    assert list(got_embeddings.index) == list(range(N_FILES))  # same rows, in order
    np.testing.assert_allclose(
        got_embeddings.to_numpy(), expected_embeddings, atol=1e-6
    )
    np.testing.assert_allclose(got_proba.to_numpy(), expected_proba, atol=1e-6)
    np.testing.assert_allclose(
        post_fit_embeddings.to_numpy(), expected_embeddings, atol=1e-6
    )
    np.testing.assert_allclose(np.asarray(post_fit_proba), expected_proba, atol=1e-6)

    # Every worker ran tasks of all four collections and read the weights once.
    per_worker = client.run(model_cache_info)
    assert len(per_worker) == 2
    for info in per_worker.values():
        assert info["loads"] == 1, info
        [held] = info["models"]
        assert held["source"] == os.path.realpath(embedder.model)
        assert held["loads"] == 1 and held["hits"] >= 1
