"""The on-disk embedding cache and the in-process memo of text embeddings.

Behaviour only: a hit gives the same output as the computation it replaces,
keys change with everything an embedding depends on (and nothing else), and
concurrent writers never leave an entry a reader would take for valid.
"""

import copy
import multiprocessing
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from sklearn_clip import CLIPEmbeddingTransformer, CLIPZeroShotClassifier
from sklearn_clip._backends.torch.handle import ModelHandle
from sklearn_clip._encoding.cache import (
    EmbeddingCache,
    encode_through_cache,
    text_memo,
)
from sklearn_clip._encoding.content_keys import content_key
from sklearn_clip.exceptions import InputErrorWarning

LABELS = ["bird", "cat", "dog"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory, gradient):
    folder = tmp_path_factory.mktemp("cache-images")
    paths = []
    for i in range(7):
        path = folder / f"image_{i}.jpg"
        Image.fromarray(gradient(34 + i, 41 - i, seed=i)).save(path, quality=90)
        paths.append(str(path))
    return paths


@pytest.fixture
def forward_calls(monkeypatch):
    """Rows that reached the image and text towers, by call."""
    calls = {"image": [], "text": []}
    embed_images, embed_texts = (
        ModelHandle._embed_image_batch,
        ModelHandle._embed_text_batch,
    )

    def images(handle, prepared, normalize):
        calls["image"].append(len(prepared))
        return embed_images(handle, prepared, normalize)

    def texts(handle, batch, normalize):
        calls["text"].append(len(batch))
        return embed_texts(handle, batch, normalize)

    monkeypatch.setattr(ModelHandle, "_embed_image_batch", images)
    monkeypatch.setattr(ModelHandle, "_embed_text_batch", texts)
    text_memo.clear()
    yield calls
    text_memo.clear()


def _perturbed(handle, scale=1e-3):
    """The same architecture with slightly different weights, in memory only."""
    model = copy.deepcopy(handle.model)
    with torch.no_grad():
        model.visual_projection.weight.add_(scale)
        model.text_projection.weight.add_(scale)
    return handle.with_model(model)


# -- hits are exact and skip the model -----------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_second_transform_reads_everything_and_agrees(
    tiny_clip_path, image_paths, tmp_path, forward_calls, dtype
):
    embedder = CLIPEmbeddingTransformer(
        tiny_clip_path, batch_size=3, cache_dir=tmp_path, cache_dtype=dtype
    ).fit(image_paths)
    first = embedder.transform(image_paths)
    assert sum(forward_calls["image"]) == len(image_paths)
    second = embedder.transform(image_paths)
    assert sum(forward_calls["image"]) == len(image_paths)  # nothing encoded again
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float32
    plain = CLIPEmbeddingTransformer(tiny_clip_path, batch_size=3).fit(image_paths)
    atol = 1e-6 if dtype == "float32" else 1e-3
    np.testing.assert_allclose(first, plain.transform(image_paths), atol=atol)
    if dtype == "float16":
        np.testing.assert_array_equal(first, first.astype(np.float16))


def test_only_misses_are_encoded_and_order_holds(
    tiny_clip_path, image_paths, tmp_path, forward_calls
):
    embedder = CLIPEmbeddingTransformer(tiny_clip_path, cache_dir=tmp_path).fit(
        image_paths
    )
    part = embedder.transform(image_paths[2:5])
    forward_calls["image"].clear()
    rows = image_paths[::-1]
    full = embedder.transform(rows)
    assert sum(forward_calls["image"]) == len(image_paths) - 3
    np.testing.assert_array_equal(full[2:5][::-1], part)
    plain = CLIPEmbeddingTransformer(tiny_clip_path).fit(rows).transform(rows)
    np.testing.assert_allclose(full, plain, atol=1e-6)


def test_texts_are_cached_on_disk_and_in_memory(
    tiny_clip_path, tmp_path, forward_calls
):
    texts = ["a red circle", "a blue square", "a red circle", "one big star"]
    embedder = CLIPEmbeddingTransformer(
        tiny_clip_path, modality="text", cache_dir=tmp_path
    ).fit(texts)
    first = embedder.transform(texts)
    assert sum(forward_calls["text"]) == 3  # distinct texts, once each
    text_memo.clear()
    second = embedder.transform(texts)  # from disk
    assert sum(forward_calls["text"]) == 3
    np.testing.assert_array_equal(first, second)
    uncached = CLIPEmbeddingTransformer(tiny_clip_path, modality="text").fit(texts)
    uncached.transform(texts)  # fills the memo
    uncached.transform(texts)  # from memory
    assert sum(forward_calls["text"]) == 6


def test_zero_shot_caches_prompts_and_images(
    tiny_clip_path, image_paths, tmp_path, forward_calls
):
    clf = CLIPZeroShotClassifier(
        tiny_clip_path,
        candidate_labels=LABELS,
        templates="openai_imagenet_7",
        cache_dir=tmp_path,
    )
    first = clf.fit().predict_proba(image_paths)
    text_memo.clear()
    second = clf.fit().predict_proba(image_paths)
    assert sum(forward_calls["text"]) == 21 and sum(forward_calls["image"]) == 7
    np.testing.assert_array_equal(first, second)
    plain = CLIPZeroShotClassifier(
        tiny_clip_path, candidate_labels=LABELS, templates="openai_imagenet_7"
    )
    np.testing.assert_allclose(plain.fit().predict_proba(image_paths), first, atol=1e-5)
    # The image entries are shared with an embedding transformer that normalises.
    forward_calls["image"].clear()
    CLIPEmbeddingTransformer(tiny_clip_path, cache_dir=tmp_path).fit(
        image_paths
    ).transform(image_paths)
    assert forward_calls["image"] == []


def test_refitting_with_the_same_prompts_encodes_them_once(tiny_clip, forward_calls):
    # What a grid search over templates does on every fold.
    clf = CLIPZeroShotClassifier(
        tiny_clip, candidate_labels=LABELS, templates="openai_imagenet_7"
    )
    first = clf.fit().class_embeddings_
    clf.set_params(templates="openai_imagenet").fit()
    assert sum(forward_calls["text"]) == 21 + 80 * 3 - 21
    second = clf.set_params(templates="openai_imagenet_7").fit().class_embeddings_
    assert sum(forward_calls["text"]) == 240
    np.testing.assert_array_equal(first, second)


def test_memo_forgets_texts_when_weights_change_in_place(tiny_clip, forward_calls):
    handle = _perturbed(tiny_clip, scale=0.0)
    before = handle.encode_texts(["a red circle"])
    weight = handle.model.text_projection.weight
    with torch.no_grad():
        weight.add_(0.1 * torch.randn_like(weight))
    after = handle.encode_texts(["a red circle"])
    assert sum(forward_calls["text"]) == 2
    assert not np.allclose(before, after)


def test_failed_rows_are_not_cached(tiny_clip_path, image_paths, tmp_path):
    rows = [image_paths[0], str(tmp_path / "missing.jpg"), image_paths[1]]
    embedder = CLIPEmbeddingTransformer(
        tiny_clip_path, cache_dir=tmp_path / "cache", on_error="nan"
    ).fit(rows)
    with pytest.warns(InputErrorWarning):
        first = embedder.transform(rows)
    assert np.isnan(first[1]).all()
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2
    with pytest.warns(InputErrorWarning) as caught:
        second = embedder.transform(rows)
    np.testing.assert_array_equal(first, second)
    [warning] = [w.message for w in caught if w.category is InputErrorWarning]
    assert warning.errors[0]["position"] == 1


# -- keys: what an entry depends on --------------------------------------------


def test_namespace_follows_weights_not_their_source(tiny_clip, tmp_path):
    cache = EmbeddingCache(tmp_path)
    base = cache.namespace(tiny_clip, kind="image", normalize=True)
    tuned = _perturbed(tiny_clip)
    assert tuned.source is None
    assert cache.namespace(tuned, kind="image", normalize=True) != base
    same = tiny_clip.with_model(copy.deepcopy(tiny_clip.model))
    assert cache.namespace(same, kind="image", normalize=True) == base
    # Saved elsewhere and loaded back: same weights, same entries.
    from sklearn_clip import load_model

    saved = tiny_clip.save_pretrained(tmp_path / "copy")
    reloaded = load_model(saved, dtype="float32")
    assert cache.namespace(reloaded, kind="image", normalize=True) == base


def test_fingerprint_changes_when_weights_change_in_place(tiny_clip):
    handle = _perturbed(tiny_clip, scale=0.0)
    before = handle.run_fingerprint
    assert handle.run_fingerprint == before
    with torch.no_grad():
        handle.model.vision_model.post_layernorm.bias.add_(1e-6)
    assert handle.run_fingerprint != before


def test_namespace_follows_normalize_preprocessing_dtype_and_kind(tiny_clip, tmp_path):
    cache = EmbeddingCache(tmp_path)
    base = cache.namespace(tiny_clip, kind="image", normalize=True)
    assert cache.namespace(tiny_clip, kind="image", normalize=False) != base
    assert cache.namespace(tiny_clip, kind="text", normalize=True) != base
    half = EmbeddingCache(tmp_path, dtype="float16")
    assert half.namespace(tiny_clip, kind="image", normalize=True) != base
    for change in [
        {"crop_size": {"height": 28, "width": 28}},
        {"image_mean": [0.5] * 3},
    ]:
        handle = ModelHandle(
            tiny_clip.model,
            tiny_clip.tokenizer,
            {**tiny_clip.processor_config, **change},
        )
        assert cache.namespace(handle, kind="image", normalize=True) != base


def test_content_keys_hash_content_not_names(tmp_path, gradient):
    array = gradient(20, 30, 0)
    path = tmp_path / "a.png"
    Image.fromarray(array).save(path)
    data = path.read_bytes()
    key = content_key(str(path), "image")
    assert key == content_key(path, "image") == content_key(data, "image")
    (tmp_path / "b.png").write_bytes(data)
    assert content_key(str(tmp_path / "b.png"), "image") == key
    Image.fromarray(array[::-1]).save(path)  # same name, new content
    assert content_key(str(path), "image") != key
    assert content_key(array, "image") != content_key(array.astype(np.float32), "image")
    assert content_key(array, "image") != content_key(array.reshape(30, 20, 3), "image")
    rgb = Image.fromarray(array)
    assert content_key(rgb, "image") == content_key(rgb.convert("RGBA"), "image")
    assert content_key(rgb, "image") != content_key(rgb.convert("L"), "image")
    assert content_key("a cat", "text") != content_key("a cat ", "text")
    for nothing in [None, np.nan, str(tmp_path / "missing.png"), np.array([object()])]:
        assert content_key(nothing, "image") is None


# -- damaged entries and concurrent writers ---------------------------------------


def test_damaged_entries_are_misses_and_get_rewritten(tiny_clip, image_paths, tmp_path):
    cache = EmbeddingCache(tmp_path)
    first = tiny_clip.encode_images(image_paths, cache=cache)
    entries = sorted(tmp_path.rglob("*.npy"))
    assert len(entries) == len(image_paths)
    entries[0].write_bytes(entries[0].read_bytes()[:-7])  # truncated
    entries[1].write_bytes(b"not an array")
    np.save(entries[2], np.zeros(5, np.float32))  # wrong shape
    entries[3].unlink()
    folder = cache.namespace(tiny_clip, kind="image", normalize=True)
    dim = tiny_clip.embedding_dim
    for entry in entries[:3]:
        assert cache.read(folder, entry.stem, dim) is None
    again = tiny_clip.encode_images(image_paths, cache=cache)
    np.testing.assert_allclose(again, first, atol=1e-6)
    for entry in entries:
        assert cache.read(folder, entry.stem, dim) is not None


def test_unwritable_cache_warns_and_still_encodes(
    tiny_clip, image_paths, tmp_path, monkeypatch
):
    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr("sklearn_clip._encoding.cache.os.replace", refuse)
    cache = EmbeddingCache(tmp_path)
    with pytest.warns(UserWarning, match="could not write to the embedding cache"):
        out = tiny_clip.encode_images(image_paths, cache=cache)
    np.testing.assert_allclose(out, tiny_clip.encode_images(image_paths), atol=1e-6)
    assert not list(tmp_path.rglob("*.npy")) and not list(tmp_path.rglob("*.tmp"))


def _vector(key, dim=64):
    return (
        np.random.default_rng(int(key[:8], 16)).standard_normal(dim).astype(np.float32)
    )


def _write_entries(directory, keys, rounds):
    cache = EmbeddingCache(directory)
    folder = cache.directory / "image-test"
    for _ in range(rounds):
        for key in keys:
            cache.write(folder, key, _vector(key))


def _check_reads(directory, keys, stop, bad):
    cache = EmbeddingCache(directory)
    folder = cache.directory / "image-test"
    while not stop.is_set():
        for key in keys:
            vector = cache.read(folder, key, 64)
            if vector is not None and not np.array_equal(vector, _vector(key)):
                bad.append(key)


@pytest.mark.parametrize("workers", ["threads", "processes"])
def test_concurrent_writers_never_expose_a_partial_entry(tmp_path, workers):
    keys = [f"{i:08x}" + "0" * 24 for i in range(1, 41)]
    stop, bad = threading.Event(), []
    reader = threading.Thread(target=_check_reads, args=(tmp_path, keys, stop, bad))
    try:
        if workers == "threads":
            writers = [
                threading.Thread(target=_write_entries, args=(tmp_path, keys, 5))
                for _ in range(4)
            ]
        else:
            # Forked while only this thread runs, so no lock is held in the child.
            context = multiprocessing.get_context("fork")
            writers = [
                context.Process(target=_write_entries, args=(tmp_path, keys, 10))
                for _ in range(3)
            ]
        for writer in writers:
            writer.start()
        reader.start()
        for writer in writers:
            writer.join(timeout=60)
            assert getattr(writer, "exitcode", 0) == 0
    finally:
        stop.set()
        reader.join()
    assert bad == []
    _check_reads(tmp_path, keys, _set_event(), bad)
    assert not list(tmp_path.rglob("*.tmp"))
    assert len(list(tmp_path.rglob("*.npy"))) == len(keys)


def _set_event():
    event = threading.Event()
    event.set()
    return event


def test_encode_through_cache_reads_in_chunks(tiny_clip, tmp_path):
    rows = [f"text {i}" for i in range(10)]
    out = np.full((10, tiny_clip.embedding_dim), np.nan, np.float32)
    seen = []

    def encode(missing, items):
        seen.append(list(missing))
        out[missing] = 1.0 / np.sqrt(out.shape[1])  # a unit vector

    cache = EmbeddingCache(tmp_path)
    kwargs = {"kind": "text", "normalize": True, "chunk": 4}
    assert encode_through_cache(cache, tiny_clip, rows, out, encode, **kwargs) == 0
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert encode_through_cache(cache, tiny_clip, rows, out, encode, **kwargs) == 10


def test_cache_parameters_are_validated(tiny_clip_path, image_paths):
    with pytest.raises(ValueError, match="cache_dtype"):
        CLIPEmbeddingTransformer(tiny_clip_path, cache_dtype="float64").fit(image_paths)
    with pytest.raises(ValueError, match="cache_dir"):
        CLIPZeroShotClassifier(tiny_clip_path, cache_dir=3).fit(None, LABELS)
