"""Faults the embedding cache must survive without ever answering wrong.

A file that changes while it is read, entries damaged behind an intact header,
inputs that are not regular files, and weights edited in place. Each test
compares the cached answer with an uncached run of the same inputs.
docs/reliability.md lists the fault classes and these tests.
"""

import copy
import os
import random
import shutil
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sklearn_clip import CLIPEmbeddingTransformer
from sklearn_clip._encoding import cache as _cache
from sklearn_clip._encoding import content_keys
from sklearn_clip._encoding import images as _images
from sklearn_clip._encoding.cache import CacheEntryWarning, EmbeddingCache
from sklearn_clip._encoding.content_keys import content_key
from sklearn_clip._encoding.encode import InputErrorWarning
from sklearn_clip._encoding.images import ImageInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _png(path, seed, size=12):
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")
    return str(path)


@pytest.fixture
def handle(tiny_clip):
    """A private copy of the tiny model: tests here may edit its weights."""
    return tiny_clip.with_model(copy.deepcopy(tiny_clip.model))


# -- 1. a file that changes while it is read ------------------------------------


def test_a_file_replaced_after_its_key_was_read_cannot_poison_the_cache(
    handle, tmp_path, monkeypatch
):
    # Deterministic: the file is replaced right after the bytes for its key
    # were read and hashed, where a second read for decoding would see the
    # new content (a sync client or a download replacing it meanwhile).
    path = tmp_path / "photo.png"
    first = _png(tmp_path / "a.png", seed=1)
    second = _png(tmp_path / "b.png", seed=2)
    data = {name: open(name, "rb").read() for name in (first, second)}
    path.write_bytes(data[first])
    expected = {name: handle.encode_images([name]) for name in (first, second)}
    assert not np.allclose(expected[first], expected[second], atol=1e-3)

    digest, replaced = content_keys._digest, []

    def digest_then_replace(kind, *parts):
        if kind == b"bytes\0" and not replaced:
            path.write_bytes(data[second])
            replaced.append(True)
        return digest(kind, *parts)

    cache = EmbeddingCache(tmp_path / "cache")
    monkeypatch.setattr(content_keys, "_digest", digest_then_replace)
    during = handle.encode_images([str(path)], cache=cache)
    monkeypatch.undo()
    assert replaced
    # The answer is the embedding of the bytes that were read (the first
    # content), not a mix of the two reads...
    np.testing.assert_allclose(during, expected[first], atol=1e-6)
    # ...and so is what was stored under that content's key.
    path.write_bytes(data[first])
    np.testing.assert_allclose(
        handle.encode_images([str(path)], cache=cache), expected[first], atol=1e-6
    )
    path.write_bytes(data[second])
    np.testing.assert_allclose(
        handle.encode_images([str(path)], cache=cache), expected[second], atol=1e-6
    )


def test_a_file_is_read_once_per_cached_row(handle, tmp_path, monkeypatch):
    paths = [_png(tmp_path / f"{i}.png", seed=i) for i in range(5)]
    reads, read = [], _images.read_image_file

    def counting(path, limit=None):
        reads.append(str(path))
        return read(path, limit)

    monkeypatch.setattr(_images, "read_image_file", counting)
    monkeypatch.setattr(_cache, "read_image_file", counting)
    monkeypatch.setattr(content_keys, "read_image_file", counting)
    out = handle.encode_images(paths, cache=EmbeddingCache(tmp_path / "cache"))
    image_reads = [p for p in reads if p.endswith(".png")]
    assert sorted(image_reads) == sorted(paths)
    np.testing.assert_allclose(out, handle.encode_images(paths), atol=1e-6)


# -- 2. entries damaged behind an intact header -----------------------------------


def _damage(entry, how, other):
    """Overwrite everything after an entry's ``.npy`` header; keep the header."""
    with open(entry, "rb") as handle:
        np.lib.format.read_magic(handle)
        np.lib.format.read_array_header_1_0(handle)
        start = handle.tell()
    data = entry.read_bytes()
    size = len(data) - start
    body = {
        "random": lambda: os.urandom(size),
        "zeros": lambda: bytes(size),
        "nan": lambda: np.full(size, 0xFF, np.uint8).tobytes(),  # all-ones: NaN
        "another image's": lambda: other.read_bytes()[start:],
    }[how]()
    entry.write_bytes(data[:start] + body)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("how", ["random", "zeros", "nan", "another image's"])
def test_a_damaged_entry_is_a_miss_rewritten_and_counted(
    handle, tmp_path, how, normalize
):
    paths = [_png(tmp_path / f"{i}.png", seed=i) for i in range(4)]
    cache = EmbeddingCache(tmp_path / "cache")
    expected = handle.encode_images(paths, normalize=normalize)
    handle.encode_images(paths, normalize=normalize, cache=cache)
    entries = sorted((tmp_path / "cache").rglob("*.npy"))
    assert len(entries) == 4
    for entry in entries[:3]:
        _damage(entry, how, other=entries[3])
    with pytest.warns(CacheEntryWarning, match="^3 damaged entries") as caught:
        again = handle.encode_images(
            paths, normalize=normalize, cache=cache, on_error="raise"
        )
    assert len([w for w in caught if w.category is CacheEntryWarning]) == 1
    np.testing.assert_allclose(again, expected, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rewritten: no warning the second time
        third = handle.encode_images(paths, normalize=normalize, cache=cache)
    np.testing.assert_array_equal(third, again)


def test_an_entry_with_a_valid_checksum_but_bad_values_is_not_returned(
    handle, tmp_path
):
    # What a faulty writer could store: the checksum matches, the values
    # cannot be a normalised embedding.
    path = _png(tmp_path / "a.png", seed=0)
    cache = EmbeddingCache(tmp_path / "cache")
    folder = cache.namespace(handle, kind="image", normalize=True)
    key, dim = content_key(path, "image"), handle.embedding_dim
    for bad in [np.zeros(dim), np.full(dim, np.nan), np.full(dim, 3.0)]:
        cache.write(folder, key, bad)
        assert cache.lookup(folder, key, dim, unit_norm=True) == (None, True)
    assert cache.lookup(folder, "0" * 32, dim) == (None, False)  # a plain miss
    with pytest.warns(CacheEntryWarning, match="^1 damaged"):
        out = handle.encode_images([path], cache=cache)
    np.testing.assert_allclose(out, handle.encode_images([path]), atol=1e-6)


def test_an_entry_replaced_by_a_fifo_is_a_miss(handle, tmp_path):
    path = _png(tmp_path / "a.png", seed=0)
    cache = EmbeddingCache(tmp_path / "cache")
    handle.encode_images([path], cache=cache)
    (entry,) = (tmp_path / "cache").rglob("*.npy")
    entry.unlink()
    os.mkfifo(entry)
    folder = cache.namespace(handle, kind="image", normalize=True)
    result = _within(10, cache.lookup, folder, entry.stem, handle.embedding_dim)
    assert result == (None, True)


# -- 3. inputs that are not regular files -------------------------------------------


def _within(seconds, function, *args, unblock=None, **kwargs):
    """``function(*args)``, failing the test if it takes over ``seconds``."""
    result = {}

    def run():
        try:
            result["value"] = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if unblock is not None:
            unblock()
        thread.join(seconds)
        pytest.fail(f"{function.__name__} blocked for more than {seconds} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def _open_writer(fifo):
    # A reader blocked on the FIFO returns once a writer has come and gone.
    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.parametrize("cached", [True, False])
def test_a_fifo_row_fails_at_once_naming_it(tiny_clip_path, tmp_path, cached):
    good = [_png(tmp_path / f"{i}.png", seed=i) for i in range(2)]
    fifo = str(tmp_path / "pipe.png")
    os.mkfifo(fifo)
    rows = [good[0], fifo, good[1]]
    cache_dir = tmp_path / "cache" if cached else None
    embedder = CLIPEmbeddingTransformer(
        tiny_clip_path, cache_dir=cache_dir, on_error="nan"
    ).fit(rows)
    with pytest.warns(InputErrorWarning, match="not a regular file \\(a FIFO\\)"):
        out = _within(30, embedder.transform, rows, unblock=lambda: _open_writer(fifo))
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
    embedder.set_params(on_error="raise")
    with pytest.raises(ImageInputError, match="row 1.*pipe.png.*a FIFO"):
        _within(30, embedder.transform, rows, unblock=lambda: _open_writer(fifo))


# Run in a child process under a memory limit: were /dev/zero read to its end,
# the child, not the test machine, would run out of memory.
_DEV_ZERO_SCRIPT = textwrap.dedent(
    """
    import resource, sys, warnings
    import numpy as np
    from sklearn_clip import CLIPEmbeddingTransformer
    from sklearn_clip._encoding.images import ImageInputError

    model, good, cache_dir = sys.argv[1:]
    embedder = CLIPEmbeddingTransformer(model, cache_dir=cache_dir, on_error="nan")
    rows = [good, "/dev/zero"]
    embedder.fit(rows)
    # Counted from what the process holds now: /dev/zero read whole would
    # exceed it within a second.
    resource.setrlimit(resource.RLIMIT_DATA, (4 << 30, resource.RLIM_INFINITY))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = embedder.transform(rows)
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()
    print([w.message for w in caught if "could not be read" in str(w.message)][0])
    try:
        embedder.set_params(on_error="raise").transform(rows)
    except ImageInputError as exc:
        print(exc)
    """
)


def test_dev_zero_is_refused_without_being_read(tiny_clip_path, tmp_path):
    good = _png(tmp_path / "a.png", seed=0)
    result = subprocess.run(
        [sys.executable, "-c", _DEV_ZERO_SCRIPT, tiny_clip_path, good, tmp_path / "c"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    warning, error = result.stdout.strip().splitlines()[-2:]
    assert "1 of 2 images" in warning and "a device" in warning
    assert "row 1" in error and "'/dev/zero'" in error and "not a regular file" in error


@pytest.mark.parametrize("cached", [True, False])
def test_a_file_over_the_size_limit_is_refused_before_it_is_read(
    tiny_clip_path, tmp_path, monkeypatch, cached
):
    small, large = _png(tmp_path / "small.png", 0, 8), _png(tmp_path / "big.png", 1, 64)
    limit = os.path.getsize(small) + 1
    assert os.path.getsize(large) > limit
    monkeypatch.setattr(_images, "MAX_FILE_BYTES", limit)
    embedder = CLIPEmbeddingTransformer(
        tiny_clip_path, cache_dir=tmp_path / "cache" if cached else None
    ).fit([small])
    assert np.isfinite(embedder.transform([small])).all()
    with pytest.raises(ImageInputError, match=f"big.png.*more than the {limit}"):
        embedder.transform([small, large])


# -- 4. weights edited in place ------------------------------------------------------


def test_weights_halved_through_data_give_new_embeddings(handle, tmp_path):
    texts = ["a red circle", "a blue square"]
    images = [_png(tmp_path / f"{i}.png", seed=i) for i in range(2)]
    cache = EmbeddingCache(tmp_path / "cache")
    before_texts = handle.encode_texts(texts)  # through the in-process memo
    before_cached = handle.encode_images(images, cache=cache)
    namespace = cache.namespace(handle, kind="image", normalize=True)
    versions = [p._version for p in handle.model.parameters()]
    [p.data.mul_(0.5) for p in handle.model.parameters()]  # the edit
    # Through .data, the edit bumps no version counter.
    assert [p._version for p in handle.model.parameters()] == versions
    fresh = handle.with_model(copy.deepcopy(handle.model))
    after_texts = handle.encode_texts(texts)
    np.testing.assert_allclose(after_texts, fresh.encode_texts(texts), atol=1e-6)
    assert not np.allclose(after_texts, before_texts, atol=1e-3)
    assert cache.namespace(handle, kind="image", normalize=True) != namespace
    after_cached = handle.encode_images(images, cache=cache)
    np.testing.assert_allclose(after_cached, fresh.encode_images(images), atol=1e-6)
    assert not np.allclose(after_cached, before_cached, atol=1e-3)


def test_an_entry_copied_from_another_models_folder_is_a_miss(handle, tmp_path):
    image = _png(tmp_path / "a.png", seed=3)
    other = handle.with_model(copy.deepcopy(handle.model))
    with torch.no_grad():
        other.model.visual_projection.weight.mul_(-1.0)
    cache = EmbeddingCache(tmp_path / "cache")
    handle.encode_images([image], cache=cache)
    ours = cache.namespace(handle, kind="image", normalize=True)
    theirs = cache.namespace(other, kind="image", normalize=True)
    key = content_key(image, "image")
    entry = Path(ours, key[:2], f"{key}.npy")
    Path(theirs, key[:2]).mkdir(parents=True)
    shutil.copy(entry, Path(theirs, key[:2], entry.name))  # a valid entry, elsewhere

    with pytest.warns(CacheEntryWarning, match="1 damaged entries"):
        read = other.encode_images([image], cache=cache)
    np.testing.assert_allclose(read, other.encode_images([image]), atol=1e-6)
    assert not np.allclose(read, handle.encode_images([image]), atol=1e-3)


@pytest.mark.parametrize("inside", [False, True], ids=["a file", "inside a file"])
def test_a_cache_dir_that_is_a_file_is_named_in_the_error(
    tiny_clip_path, tmp_path, inside
):
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file")
    cache_dir = not_a_folder / "embeddings" if inside else not_a_folder
    embedder = CLIPEmbeddingTransformer(tiny_clip_path, cache_dir=cache_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheEntryWarning)
        with pytest.raises(NotADirectoryError, match="is a file, not a folder") as e:
            embedder.fit_transform([np.zeros((8, 8, 3), np.uint8)])
    assert repr(str(not_a_folder)) in str(e.value)


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p.data.add_(torch.randn_like(p)),
        lambda p: p.detach().mul_(-0.5),
        lambda p: p.data.copy_(torch.randn_like(p)),
    ],
    ids=["data.add_", "detach().mul_", "data.copy_"],
)
def test_untracked_edits_of_one_tensor_change_the_text_embeddings(handle, edit):
    torch.manual_seed(0)
    texts = ["a green triangle"]
    before = handle.encode_texts(texts)
    edit(handle.model.text_projection.weight)
    fresh = handle.with_model(copy.deepcopy(handle.model))
    np.testing.assert_allclose(
        handle.encode_texts(texts), fresh.encode_texts(texts), atol=1e-6
    )
    assert not np.allclose(handle.encode_texts(texts), before, atol=1e-4)


# -- acceptance: a soak test ------------------------------------------------------

_SOAK_WORKER = textwrap.dedent(
    """
    import sys, warnings
    import torch
    from sklearn_clip import load_model
    from sklearn_clip._encoding.cache import EmbeddingCache

    model, file_list, cache_dir, rounds = sys.argv[1:]
    torch.set_num_threads(1)
    handle = load_model(model, device="cpu", dtype="float32")  # as tiny_clip
    paths = open(file_list).read().split()
    warnings.simplefilter("ignore")  # rows replaced mid-write fail as NaN
    for _ in range(int(rounds)):
        handle.encode_images(
            paths, cache=EmbeddingCache(cache_dir), on_error="nan", batch_size=64
        )
    """
)


def _replace_files(paths, stop, written, rng, started, limit):
    """Replace random files until told to stop: atomically, or rewritten in place.

    Starts once ``started()`` (the workers are reading), and makes at most
    ``limit`` replacements, paced so that they spread over the workers'
    rounds rather than compete with them for the processor.
    """
    while not started() and not stop.wait(0.1):
        pass
    step = 0
    while not stop.wait(0.01) and step < limit:
        step += 1
        path = paths[rng.randrange(len(paths))]
        colour = [rng.randrange(256) for _ in range(3)]
        image = Image.fromarray(np.full((8, 8, 3), colour, np.uint8))
        temporary = f"{path}.new"
        image.save(temporary, format="PNG")
        data = open(temporary, "rb").read()
        written[content_key(data, "image")] = data
        if step % 2:
            os.replace(temporary, path)
        else:
            os.unlink(temporary)
            with open(path, "wb") as handle:  # readers may see it half written
                handle.write(data[: len(data) // 2])
                handle.flush()
                handle.write(data[len(data) // 2 :])


@pytest.mark.slow
def test_soak_four_processes_and_a_replacing_thread_share_one_cache(
    tiny_clip, tiny_clip_path, tmp_path
):
    n_files, n_workers, rounds = 2000, 4, 3
    folder = tmp_path / "images"
    folder.mkdir()
    written = {}
    paths = []
    for i in range(n_files):
        paths.append(_png(folder / f"{i:04d}.png", seed=i, size=8))
        data = open(paths[-1], "rb").read()
        written[content_key(data, "image")] = data
    file_list = tmp_path / "files.txt"
    file_list.write_text("\n".join(paths))
    cache_dir = tmp_path / "cache"
    stop = threading.Event()
    replacer = threading.Thread(
        target=_replace_files,
        args=(paths, stop, written, random.Random(0), cache_dir.exists, 3000),
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _SOAK_WORKER, tiny_clip_path, str(file_list)]
            + [str(cache_dir), str(rounds)],
            env=env,
            stderr=subprocess.PIPE,
        )
        for _ in range(n_workers)
    ]
    replacer.start()
    try:
        errors = [worker.communicate(timeout=600)[1] for worker in workers]
    finally:
        stop.set()
        replacer.join()
    assert [w.returncode for w in workers] == [0] * n_workers, errors
    n_replaced = len(written) - n_files
    assert n_replaced > 100  # the replacer ran while the workers did

    # Every cached answer over the final files equals an uncached run.
    uncached = tiny_clip.encode_images(paths)
    cache = EmbeddingCache(cache_dir)
    cached = tiny_clip.encode_images(paths, cache=cache)
    wrong = np.abs(cached - uncached).max(axis=1) > 1e-5
    assert np.isfinite(uncached).all() and wrong.sum() == 0

    # And every entry left in the cache holds the embedding of its own key's
    # content, whichever version of a file it came from.
    namespace = cache.namespace(tiny_clip, kind="image", normalize=True)
    entries = {entry.stem for entry in namespace.rglob("*.npy")}
    assert entries <= set(written)
    # Contents replaced while the workers read them were cached too: the
    # replacements did overlap the reads.
    assert len(entries) > n_files
    keys = sorted(entries)
    stored = np.stack(
        [cache.read(namespace, key, tiny_clip.embedding_dim) for key in keys]
    )
    reference = tiny_clip.encode_images([written[key] for key in keys])
    assert (np.abs(stored - reference).max(axis=1) > 1e-5).sum() == 0
    assert not list(cache_dir.rglob("*.tmp"))
    print(
        f"{n_workers} processes x {rounds} rounds over {n_files} files, "
        f"{n_replaced} replacements: {len(keys)} entries, 0 wrong"
    )
