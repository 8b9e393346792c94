"""The fast paths keep the results: JPEG draft decoding stays within tolerance,
automatic batch sizes keep every row in order through out-of-memory back-off,
and decoding streams with bounded look-ahead. Behaviour only, no timings."""

import io
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin
from transformers import CLIPImageProcessorPil

from sklearn_clip import CLIPEmbeddingTransformer, ModelHandle, load_model
from sklearn_clip._backends.torch.tensors import normalize_batch
from sklearn_clip._encoding import encode as _encode
from sklearn_clip._encoding import prefetch
from sklearn_clip._encoding.batches import AUTO_BATCH_SIZES, BatchSizer
from sklearn_clip._encoding.encode import encode_images
from sklearn_clip._encoding.images import prepare_image
from sklearn_clip._encoding.preprocess import ImageConfig
from sklearn_clip.datasets import make_photo
from tests.conftest import grey_levels

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _photo(width, height, *, edges=False, seed=0):
    """JPEG bytes of a photo-like image (see ``make_photo``)."""
    buffer = io.BytesIO()
    image = make_photo(width, height, edges=edges, random_state=seed)
    Image.fromarray(image).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def drafted_sizes(monkeypatch):
    sizes = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = draft(self, mode, size)
        sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return sizes


def _pixels(items, config):
    return normalize_batch([prepare_image(item, config) for item in items], config)


# -- JPEG draft decoding ----------------------------------------------------------


@pytest.mark.parametrize("size", [(1600, 1200), (2400, 1800)])
@pytest.mark.parametrize("edges", [False, True])
def test_draft_decoding_stays_within_tolerance(size, edges, drafted_sizes):
    data = [_photo(*size, edges=edges)]
    drafted = _pixels(data, ImageConfig())
    assert drafted_sizes and all(min(s) >= 2 * 224 for s in drafted_sizes)
    assert all(s[0] < size[0] for s in drafted_sizes)  # it did decode smaller
    full = _pixels(data, ImageConfig(draft_factor=None))
    difference = (drafted - full).abs()
    # In normalised units (one grey level is about 0.015): a few levels at
    # worst, a fraction of one on average.
    assert difference.max() < 0.15
    assert difference.mean() < 0.015


def test_small_jpegs_are_decoded_fully(drafted_sizes):
    data = [_photo(640, 480, edges=True)]
    np.testing.assert_array_equal(
        _pixels(data, ImageConfig()), _pixels(data, ImageConfig(draft_factor=None))
    )
    assert drafted_sizes == []


def test_without_draft_large_jpegs_are_within_a_grey_level_of_pillow(drafted_sizes):
    data = _photo(1200, 900, edges=True)
    config = ImageConfig(draft_factor=None)
    reference = CLIPImageProcessorPil(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
    )
    theirs = reference(images=[Image.open(io.BytesIO(data))], return_tensors="pt")
    levels = grey_levels(_pixels([data], config) - theirs["pixel_values"], config)
    assert levels.round().max().item() <= 1
    assert drafted_sizes == []


def test_draft_keeps_embeddings(tiny_clip, drafted_sizes):
    # The tiny model sees 30 pixels, so 160 pixels and more are drafted.
    data = [_photo(320, 240, edges=e, seed=s) for e in (False, True) for s in (0, 1)]
    drafted = tiny_clip.encode_images(data)
    assert drafted_sizes
    exact = tiny_clip.with_model(tiny_clip.model)
    exact.image_config = replace(tiny_clip.image_config, draft_factor=None)
    full = exact.encode_images(data)
    assert (drafted * full).sum(axis=1).min() >= 0.9999


@pytest.mark.slow
def test_draft_keeps_vit_b32_embeddings(tmp_path):
    from sklearn_clip.toy import make_random_clip

    handle = load_model(make_random_clip(tmp_path / "b32"), device="cpu")
    sizes = [(1024, 768), (1600, 1200), (4032, 3024)]
    data = [_photo(*s, edges=e) for s in sizes for e in (False, True)]
    drafted = handle.encode_images(data)
    exact = handle.with_model(handle.model)
    exact.image_config = replace(handle.image_config, draft_factor=None)
    assert (drafted * exact.encode_images(data)).sum(axis=1).min() >= 0.9999


# -- automatic batch size ------------------------------------------------------------


def test_auto_batch_grows_while_throughput_improves():
    sizer = BatchSizer("auto", torch.device("cuda"))
    first, largest = AUTO_BATCH_SIZES[("image", "cuda")]
    assert (sizer.size, sizer.largest) == (first, largest)
    for seconds in (60.0, 1.0):  # the first batch of a size is a warm-up
        sizer.observe(first, seconds)
    assert sizer.size == 2 * first
    for seconds in (60.0, 1.5):  # 33 % more rows per second
        sizer.observe(2 * first, seconds)
    assert sizer.size == 4 * first
    for seconds in (0.1, 2.9):  # 3 % more: settle on the size before
        sizer.observe(4 * first, seconds)
    assert sizer.size == 2 * first
    sizer.observe(2 * first, 0.1)
    assert sizer.size == 2 * first


def test_auto_batch_stops_at_the_largest_and_fixed_sizes_never_move():
    sizer = BatchSizer("auto", torch.device("cuda"), kind="text")
    while sizer._growing:
        sizer.observe(sizer.size, 1e-3)
    assert sizer.size == AUTO_BATCH_SIZES[("text", "cuda")][1]
    fixed = BatchSizer(8, torch.device("cuda"))
    fixed.observe(8, 1.0)
    assert fixed.size == 8 and not fixed.shrink(8)
    assert (
        BatchSizer("auto", torch.device("cpu")).size
        == AUTO_BATCH_SIZES[("image", "cpu")][0]
    )


@pytest.fixture
def images(gradient):
    return [gradient(25 + i % 7, 33 - i % 5, seed=i) for i in range(23)]


def _out_of_memory_above(limit, monkeypatch, name="_embed_image_batch"):
    # Each batch of images or texts reaches the model through the handle.
    seen = []
    real = getattr(ModelHandle, name)

    def forward(handle, batch, normalize):
        seen.append(len(batch))
        if len(batch) > limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(handle, batch, normalize)

    monkeypatch.setattr(ModelHandle, name, forward)
    return seen


def test_out_of_memory_halves_the_batch_and_keeps_every_row(
    tiny_clip, images, monkeypatch
):
    plain, _ = encode_images(tiny_clip, images, batch_size=4)
    monkeypatch.setitem(AUTO_BATCH_SIZES, ("image", "cpu"), (16, 16))
    seen = _out_of_memory_above(5, monkeypatch)
    auto, failures = encode_images(tiny_clip, images, batch_size="auto")
    assert failures == []
    assert seen[:3] == [16, 8, 4] and max(seen[3:]) == 4
    assert sum(seen[2:]) == len(images)  # each row encoded once, after back-off
    np.testing.assert_array_equal(auto, plain)


def test_out_of_memory_back_off_for_texts_and_through_the_estimator(
    float32, tiny_clip, tiny_clip_path, images, monkeypatch
):
    texts = [f"a photo of {i} red circles" for i in range(40)]
    plain = tiny_clip.encode_texts(texts, batch_size=16)
    monkeypatch.setitem(AUTO_BATCH_SIZES, ("text", "cpu"), (64, 64))
    _encode.text_memo.clear()
    seen = _out_of_memory_above(16, monkeypatch, "_embed_text_batch")
    auto = tiny_clip.encode_texts(texts, batch_size="auto")
    assert seen[:3] == [40, 20, 10]
    np.testing.assert_allclose(auto, plain, atol=1e-6)
    monkeypatch.setitem(AUTO_BATCH_SIZES, ("image", "cpu"), (32, 32))
    _out_of_memory_above(3, monkeypatch)
    embedder = CLIPEmbeddingTransformer(tiny_clip_path, batch_size="auto")
    out = embedder.fit(images).transform(images)
    expected, _ = encode_images(tiny_clip, images, batch_size=2)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_out_of_memory_propagates_with_a_fixed_batch_or_at_one_row(
    tiny_clip, images, monkeypatch
):
    _out_of_memory_above(5, monkeypatch)
    with pytest.raises(torch.OutOfMemoryError):
        encode_images(tiny_clip, images, batch_size=8)
    _out_of_memory_above(0, monkeypatch)
    with pytest.raises(torch.OutOfMemoryError):
        encode_images(tiny_clip, images, batch_size="auto")


def test_auto_batch_grows_during_a_call(tiny_clip, images, monkeypatch):
    monkeypatch.setitem(AUTO_BATCH_SIZES, ("image", "cpu"), (2, 8))
    seen = []
    real = ModelHandle.image_features

    def forward(model, pixels):
        seen.append(len(pixels))
        time.sleep(0.03)  # a fixed cost per call: bigger batches are faster
        return real(model, pixels)

    monkeypatch.setattr(ModelHandle, "image_features", forward)
    auto, _ = encode_images(tiny_clip, images, batch_size="auto")
    assert seen[:5] == [2, 2, 4, 4, 8] and max(seen) == 8
    plain, _ = encode_images(tiny_clip, images, batch_size=8)
    np.testing.assert_allclose(auto, plain, atol=1e-6)


# -- streaming ---------------------------------------------------------------------


def test_decoding_runs_a_bounded_number_of_batches_ahead(
    tiny_clip, images, monkeypatch
):
    lock, decoded, consumed, ahead = threading.Lock(), [0], [0], []
    real_prepare, real_forward = prefetch.prepare_image, ModelHandle.image_features

    def prepare(item, config):
        with lock:
            decoded[0] += 1
        return real_prepare(item, config)

    def forward(model, pixels):
        time.sleep(0.02)  # a slow model: decoding would run away if unbounded
        with lock:
            ahead.append(decoded[0] - consumed[0])
            consumed[0] += len(pixels)
        return real_forward(model, pixels)

    monkeypatch.setattr(prefetch, "prepare_image", prepare)
    monkeypatch.setattr(ModelHandle, "image_features", forward)
    rows = images * 4
    encode_images(tiny_clip, rows, batch_size=2, n_workers=2)
    assert consumed[0] == len(rows)
    # The batch being encoded, plus at most `prefetch` (2) decoded ahead and
    # one being decoded.
    assert max(ahead) <= 2 * 4


@pytest.mark.slow
def test_gpu_benchmark_script_runs_in_smoke_mode(tmp_path):
    """The GPU script runs only where there is a card: keep it working meanwhile."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"
    env = {**os.environ, "SKLEARN_CLIP_BENCH_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(script), "--smoke", "--compile"],
        capture_output=True,
        text=True,
        env=env,
        cwd=script.parent,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "acceptance 5 (tiny (smoke))" in done.stdout
    for row in (
        "ready tensors, transformers get_image_features",
        "ready tensors, sklearn-clip forward",
        "ready tensors, sklearn-clip forward, compile=True",
        "sklearn-clip from JPEG",
        "+ get_image_features",
    ):
        assert row in done.stdout, row


def test_decoding_threads_resize_on_one_intra_op_thread(tiny_clip, images, monkeypatch):
    # Torch ops in decoding threads must not start a team of threads each,
    # and limiting them must leave the caller's (the model's) threads alone.
    counts = []
    real_prepare = prefetch.prepare_image

    def prepare(item, config):
        counts.append(torch.get_num_threads())
        return real_prepare(item, config)

    monkeypatch.setattr(prefetch, "prepare_image", prepare)
    before = torch.get_num_threads()
    encode_images(tiny_clip, images, batch_size=4, n_workers=2)
    assert counts and set(counts) == {1}
    assert torch.get_num_threads() == before
    fresh = []
    thread = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert fresh == [before]
