"""A model is what it was: its fingerprint, and pickles that keep the estimator.

A model's identity is a hash of its weights (``ModelHandle.fingerprint``), not
the path it was read from. Fitted estimators record it (``model_fingerprint_``)
and a pickled estimator or handle that reloads from its path refuses weights
rewritten there. Pickling never changes the live estimator.
"""

import pickle
import shutil

import numpy as np
import pytest

from sklearn_clip import (
    CLIPEmbeddingTransformer,
    CLIPNearestNeighbors,
    clear_model_cache,
    load_model,
)
from sklearn_clip.toy import make_tiny_clip

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture
def model_dir(tmp_path):
    return make_tiny_clip(tmp_path / "model", random_state=0)


def _rewrite_with_other_weights(path):
    """The same folder, written over with another model's weights."""
    shutil.rmtree(path)
    make_tiny_clip(path, random_state=1)
    clear_model_cache()  # as a new process would see the folder


def test_fingerprint_is_the_weights_not_the_path_nor_the_precision(model_dir, tmp_path):
    handle = load_model(model_dir, device="cpu", dtype="float32")
    copy = shutil.copytree(model_dir, tmp_path / "copy")
    assert load_model(copy, device="cpu", dtype="float32").fingerprint == (
        handle.fingerprint
    )
    bf16 = load_model(model_dir, device="cpu", dtype="bfloat16")
    assert bf16.fingerprint == handle.fingerprint
    saved = handle.save_pretrained(tmp_path / "saved")
    assert load_model(saved, device="cpu").fingerprint == handle.fingerprint
    other = make_tiny_clip(tmp_path / "other", random_state=1)
    assert load_model(other, device="cpu").fingerprint != handle.fingerprint


def test_fit_records_the_fingerprint(model_dir):
    embedder = CLIPEmbeddingTransformer(model_dir, device="cpu").fit(["a cat"])
    handle = load_model(model_dir, device="cpu", dtype=embedder.dtype_)
    assert embedder.model_fingerprint_ == handle.fingerprint


def test_pickled_searcher_refuses_weights_rewritten_at_its_path(model_dir, gradient):
    images = [gradient(12, 12, seed) for seed in range(4)]
    searcher = CLIPNearestNeighbors(model_dir, n_neighbors=1, device="cpu")
    data = pickle.dumps(searcher.fit(images))
    _rewrite_with_other_weights(model_dir)

    loaded = pickle.loads(data)
    with pytest.raises(ValueError, match="rewritten with another model") as error:
        loaded.kneighbors(images)
    assert str(model_dir) in str(error.value)
    assert "store_weights_in_pickle=True" in str(error.value)


def test_pickled_transformer_refuses_rewritten_weights(model_dir):
    embedder = CLIPEmbeddingTransformer(model_dir, modality="text", device="cpu")
    data = pickle.dumps(embedder.fit(["a cat"]))
    _rewrite_with_other_weights(model_dir)
    with pytest.raises(ValueError, match="rewritten with another model"):
        pickle.loads(data).transform(["a dog"])


def test_pickled_handle_refuses_rewritten_weights(model_dir):
    data = pickle.dumps(load_model(model_dir, device="cpu"))
    _rewrite_with_other_weights(model_dir)
    with pytest.raises(ValueError, match="a pickled model handle"):
        pickle.loads(data)


def test_pickle_with_the_same_weights_answers_the_same(model_dir):
    embedder = CLIPEmbeddingTransformer(model_dir, modality="text", device="cpu")
    expected = embedder.fit_transform(["a cat", "a dog"])
    clear_model_cache()
    loaded = pickle.loads(pickle.dumps(embedder))
    np.testing.assert_array_equal(loaded.transform(["a cat", "a dog"]), expected)


def test_pickling_leaves_the_estimator_as_it_was(model_dir):
    embedder = CLIPEmbeddingTransformer(model_dir, modality="text", device="cpu")
    embedder.fit(["a cat"])
    before = dict(embedder.__dict__)
    pickle.dumps(embedder)
    assert embedder.__dict__.keys() == before.keys()
    assert embedder._get_model() is before["_handle"]  # the loaded model kept


def test_every_pickle_with_store_weights_holds_the_weights(model_dir):
    embedder = CLIPEmbeddingTransformer(model_dir, modality="text", device="cpu")
    expected = embedder.fit_transform(["a cat"])
    light = pickle.dumps(embedder)  # without the weights, as by default
    embedder.set_params(store_weights_in_pickle=True)
    loaded = pickle.loads(light).set_params(store_weights_in_pickle=True)
    pickles = [pickle.dumps(embedder), pickle.dumps(embedder), pickle.dumps(loaded)]
    shutil.rmtree(model_dir)  # the weights now live in the pickles only
    clear_model_cache()
    pickles.append(pickle.dumps(pickle.loads(pickles[0])))
    for data in pickles:
        np.testing.assert_allclose(
            pickle.loads(data).transform(["a cat"]), expected, atol=1e-6
        )
