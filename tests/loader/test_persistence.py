"""Every estimator saved and read back with pickle, joblib and skops.

skops (the format scikit-learn recommends for sharing, and mlflow's for
scikit-learn models) reads only the types it is told to trust: a file holds
the package's estimators and model handles, whose states are plain values
(paths, fingerprints, the weights' file bytes).
"""

import io
import pickle
import shutil
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPEmbeddingTransformer,
    CLIPFewShotClassifier,
    CLIPNearestNeighbors,
    CLIPZeroShotClassifier,
    load_model,
    skops_trusted_types,
)
from sklearn_clip.datasets import make_shapes
from sklearn_clip.toy import make_tiny_clip

LABELS = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def shapes():
    data = make_shapes(48, image_size=32, colors=LABELS, random_state=0)
    return list(data.images), list(data.captions), data.color


@pytest.fixture(scope="module")
def tuner(tiny_clip_path, shapes):
    images, captions, _ = shapes
    options = {"max_epochs": 1, "batch_size": 16, "random_state": 0}
    return CLIPContrastiveFinetuner(tiny_clip_path, **options).fit(images, captions)


def _fitted(kind, tiny_clip_path, tuner, shapes):
    images, _, colors = shapes
    model = {
        "path": tiny_clip_path,
        "handle": load_model(tiny_clip_path),
        "tuned": tuner.model_,
    }
    if kind == "tuner":
        return tuner, images[:5]
    if kind == "neighbors":
        estimator = CLIPNearestNeighbors(model["handle"], n_neighbors=2).fit(images)
        return estimator, ["a red square", "a blue circle"]
    source = model[kind.rsplit("-", 1)[1]]
    if kind.startswith("embedding"):
        return CLIPEmbeddingTransformer(source).fit(images), images[:5]
    if kind.startswith("few-shot"):
        few_shot = CLIPFewShotClassifier(source, candidate_labels=LABELS, cv=2)
        return few_shot.fit(images, colors), images[:5]
    zero_shot = CLIPZeroShotClassifier(source, candidate_labels=LABELS)
    return zero_shot.fit(None), images[:5]


def _answers(estimator, X):
    if isinstance(estimator, CLIPNearestNeighbors):
        return estimator.kneighbors(X, query_modality="text")[0]
    if hasattr(estimator, "predict_proba"):
        return estimator.predict_proba(X)
    return estimator.transform(X)


def _skops_round_trip(estimator):
    sio = pytest.importorskip("skops.io")
    data = sio.dumps(estimator)
    # Nothing but the package's own types asks to be trusted.
    assert set(sio.get_untrusted_types(data=data)) <= set(skops_trusted_types())
    return sio.loads(data, trusted=skops_trusted_types())


def _joblib_round_trip(estimator):
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    buffer.seek(0)
    return joblib.load(buffer)


ROUND_TRIPS = {
    "pickle": lambda estimator: pickle.loads(pickle.dumps(estimator)),
    "joblib": _joblib_round_trip,
    "skops": _skops_round_trip,
}
KINDS = [
    "zero-shot-path",
    "zero-shot-handle",
    "zero-shot-tuned",
    "few-shot-handle",
    "embedding-path",
    "embedding-tuned",
    "neighbors",
    "tuner",
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt", sorted(ROUND_TRIPS))
def test_an_estimator_read_back_answers_the_same(
    kind, fmt, tiny_clip_path, tuner, shapes, float32
):
    estimator, X = _fitted(kind, tiny_clip_path, tuner, shapes)
    expected = _answers(estimator, X)
    restored = ROUND_TRIPS[fmt](estimator)
    np.testing.assert_allclose(_answers(restored, X), expected, atol=1e-6)
    # Saving leaves the live estimator as it was.
    np.testing.assert_allclose(_answers(estimator, X), expected, atol=1e-6)


def test_a_pickle_whose_model_folder_is_gone_says_what_to_do(tmp_path, shapes):
    images, _, _ = shapes
    folder = make_tiny_clip(tmp_path / "model")
    data = pickle.dumps(CLIPEmbeddingTransformer(str(folder)).fit(images))
    shutil.rmtree(folder)
    restored = pickle.loads(data)
    with pytest.raises(FileNotFoundError, match="store_weights_in_pickle=True"):
        restored.transform(images[:1])


def test_an_mlflow_model_carries_its_weights_into_a_fresh_process(tmp_path, shapes):
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    images, _, _ = shapes
    folder = make_tiny_clip(tmp_path / "model")
    # float32 as a parameter, not a setting of this process: the serving
    # process must compute at the precision the model was checked at.
    clf = CLIPZeroShotClassifier(
        str(folder),
        candidate_labels=LABELS,
        store_weights_in_pickle=True,
        dtype="float32",
    ).fit(None)
    frame = pd.DataFrame({"image": images[:4]})
    expected = clf.predict_proba(frame)
    mlflow_sklearn.save_model(
        clf,
        tmp_path / "mlflow-model",
        serialization_format="skops",
        skops_trusted_types=skops_trusted_types(),
        pyfunc_predict_fn="predict_proba",
        extra_pip_requirements=["torch>=2.6", "transformers>=4.45"],
    )
    requirements = (tmp_path / "mlflow-model" / "requirements.txt").read_text()
    for requirement in ("sklearn-clip", "torch>=2.6", "transformers>=4.45"):
        assert requirement in requirements
    shutil.rmtree(folder)  # the artifact must not need the model folder
    np.save(tmp_path / "images.npy", np.stack(images[:4]))
    code = (
        "import sys, mlflow.pyfunc, numpy as np, pandas as pd\n"
        "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "frame = pd.DataFrame({'image': list(np.load(sys.argv[2]))})\n"
        "np.save(sys.argv[3], model.predict(frame))\n"
    )
    paths = [tmp_path / "mlflow-model", tmp_path / "images.npy", tmp_path / "out.npy"]
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(paths[2]), expected, atol=1e-6)
