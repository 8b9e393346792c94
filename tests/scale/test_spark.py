"""Spark: the estimators over a Spark DataFrame, on a ``local[2]`` session.

Embeddings, zero-shot and few-shot outputs computed by Spark's Python workers
through ``sklearn_clip.spark`` equal the in-memory ones row for row, from
paths and from the bytes of Spark's ``binaryFile`` source; each worker process
reads the weights once (its own ``model_cache_info()``, reported with each
frame); an export runs on workers where PyTorch cannot be imported; and
unreadable rows follow ``on_error`` without failing the job.
"""

import os
import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_clip import (
    CLIPEmbeddingTransformer,
    CLIPFewShotClassifier,
    CLIPZeroShotClassifier,
    export_model,
)
from sklearn_clip.spark import OUTPUT_COLUMNS, output_schema, partition_function
from tests.conftest import noise_pngs

pytest.importorskip("pyspark")
pytestmark = [
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

LABELS = ["red", "green", "blue"]
N_FILES = 48
PARTITIONS = 6
ON_CPU = {"device": "cpu", "dtype": "float32"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spark-images")
    return noise_pngs(folder, [(12 + i % 5, 14) for i in range(N_FILES)])


def map_in_pandas(frame, estimator, method="transform", column="path"):
    """The recipe of ``docs/scaling.md``."""
    function = partition_function(estimator, method, column=column)
    return frame.mapInPandas(function, output_schema(frame.schema, estimator, method))


def _frame(spark, paths):
    rows = pd.DataFrame({"id": range(len(paths)), "path": paths})
    return spark.createDataFrame(rows).repartition(PARTITIONS, "id")


def _counted(spark, frame, estimator, method, source):
    """``map_in_pandas``'s rows, in input order, each with the worker's process
    id, the loads of ``source`` in it, and whether it imported PyTorch."""
    from pyspark.sql import types

    function = partition_function(estimator, method)

    def counting(frames):
        import sys

        from sklearn_clip import model_cache_info

        for frame in function(frames):
            held = model_cache_info()["models"]
            loads = [m["loads"] for m in held if m["source"] == source]
            torch = any(name.split(".")[0] == "torch" for name in sys.modules)
            yield frame.assign(pid=os.getpid(), loads=sum(loads), torch=torch)

    schema = output_schema(frame.schema, estimator, method)
    extra = [("pid", types.LongType()), ("loads", types.LongType())]
    extra.append(("torch", types.BooleanType()))
    for name, kind in extra:
        schema = schema.add(name, kind)
    got = frame.mapInPandas(counting, schema).toPandas()
    return got.sort_values("id").reset_index(drop=True)


def _assert_loaded_once_per_worker(results):
    per_worker = pd.concat(results).groupby("pid")["loads"]
    assert (per_worker.max() == 1).all(), per_worker.max()
    # Several partitions went through one worker: it served them from its cache.
    assert per_worker.size().max() > N_FILES // PARTITIONS


@pytest.fixture(scope="module")
def fitted(tiny_clip_path, files):
    embedder = CLIPEmbeddingTransformer(tiny_clip_path, **ON_CPU).fit(files[:1])
    zero_shot = CLIPZeroShotClassifier(
        tiny_clip_path, candidate_labels=LABELS, **ON_CPU
    ).fit()
    labels = np.array(LABELS)[np.arange(12) % 3]
    few_shot = CLIPFewShotClassifier(
        tiny_clip_path, candidate_labels=LABELS, cv=2, random_state=0, **ON_CPU
    ).fit(files[:12], labels)
    return embedder, zero_shot, few_shot


def test_spark_outputs_equal_in_memory_ones_with_one_load_per_worker(
    spark, files, fitted, tiny_clip_path
):
    embedder, zero_shot, few_shot = fitted
    frame = _frame(spark, files)
    source = os.path.realpath(tiny_clip_path)
    results = []
    for estimator, method in [
        (embedder, "transform"),
        (zero_shot, "predict_proba"),
        (zero_shot, "predict"),
        (few_shot, "predict_proba"),
        (few_shot, "predict"),
    ]:
        got = _counted(spark, frame, estimator, method, source)
        assert list(got["id"]) == list(range(N_FILES)) and got["error"].isna().all()
        column = OUTPUT_COLUMNS[method]
        expected = getattr(estimator, method)(files)
        if method == "predict":
            assert list(got[column]) == list(expected)
        else:
            np.testing.assert_allclose(np.stack(got[column]), expected, atol=1e-6)
        results.append(got)
    _assert_loaded_once_per_worker(results)


def test_spark_embeds_the_bytes_of_the_binary_file_source(spark, files, fitted):
    embedder = fitted[0]
    frame = spark.read.format("binaryFile").load(os.path.dirname(files[0]))
    got = map_in_pandas(frame, embedder, column="content").toPandas()
    got["path"] = got["path"].str.removeprefix("file:")
    got = got.set_index("path").loc[files]
    expected = embedder.transform(files)
    np.testing.assert_allclose(np.stack(got["embedding"]), expected, atol=1e-6)


def test_an_export_runs_on_workers_that_cannot_import_torch(
    spark, files, tiny_clip_path, without_torch, tmp_path
):
    exported = export_model(tiny_clip_path, tmp_path / "export", backend="onnx")
    embedder = CLIPEmbeddingTransformer(exported, **ON_CPU).fit(files[:1])
    zero_shot = CLIPZeroShotClassifier(exported, candidate_labels=LABELS, **ON_CPU)
    zero_shot.fit()
    # Workers started for these jobs get the environment without PyTorch: a
    # changed environment gets workers of its own.
    environment = spark.sparkContext.environment
    environment["PYTHONPATH"] = without_torch["PYTHONPATH"]
    try:
        frame = _frame(spark, files)
        source = os.path.realpath(exported)
        embedded = _counted(spark, frame, embedder, "transform", source)
        proba = _counted(spark, frame, zero_shot, "predict_proba", source)
    finally:
        del environment["PYTHONPATH"]
    assert not embedded["torch"].any() and not proba["torch"].any()
    expected = CLIPEmbeddingTransformer(tiny_clip_path, **ON_CPU).fit(files[:1])
    # The export against the PyTorch model: as close as ONNX Runtime gets.
    np.testing.assert_allclose(
        np.stack(embedded["embedding"]), expected.transform(files), atol=1e-4
    )
    # The export on the workers against the export in this process: equal.
    np.testing.assert_allclose(
        np.stack(embedded["embedding"]), embedder.transform(files), atol=1e-6
    )
    np.testing.assert_allclose(
        np.stack(proba["probabilities"]), zero_shot.predict_proba(files), atol=1e-6
    )
    _assert_loaded_once_per_worker([embedded, proba])


def test_unreadable_rows_follow_on_error_without_failing_the_job(
    spark, files, tiny_clip_path, tmp_path
):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    paths = [*files[:10], str(tmp_path / "missing.jpg"), *files[10:20], str(text)]
    frame = _frame(spark, paths)
    embedder = CLIPEmbeddingTransformer(tiny_clip_path, on_error="nan", **ON_CPU)
    embedder.fit(files[:1])
    zero_shot = CLIPZeroShotClassifier(
        tiny_clip_path, candidate_labels=LABELS, on_error="nan", **ON_CPU
    ).fit()
    embedded = map_in_pandas(frame, embedder).toPandas().sort_values("id")
    predicted = map_in_pandas(frame, zero_shot, "predict").toPandas().sort_values("id")
    bad = [10, 21]
    for got in (embedded, predicted):
        assert list(np.flatnonzero(got["error"].notna())) == bad
        assert "missing.jpg" in got["error"].iloc[10]
        assert "UnidentifiedImageError" in got["error"].iloc[21]
    embeddings = np.stack(embedded["embedding"])
    assert np.isnan(embeddings[bad]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the in-memory call's InputErrorWarning
        np.testing.assert_allclose(embeddings, embedder.transform(paths), atol=1e-6)
        labels = [None if pd.isna(v) else v for v in predicted["prediction"]]
        assert labels == list(zero_shot.predict(paths))
    assert predicted["prediction"].iloc[bad].isna().all()

    strict = CLIPEmbeddingTransformer(tiny_clip_path, **ON_CPU).fit(files[:1])
    # Whichever bad row a worker meets first fails its task, and the job.
    with pytest.raises(Exception, match="could not read the image.*(missing|notes)"):
        map_in_pandas(frame, strict).collect()
