"""The three estimators on a CUDA device: same answers as on CPU, bf16 by default.

These run only where a CUDA device is present (``pytest -m gpu``); CI machines
have none. Images are small and the models tiny, so the file takes seconds.
"""

import numpy as np
import pytest
import torch

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPEmbeddingTransformer,
    CLIPZeroShotClassifier,
    load_model,
)
from sklearn_clip.datasets import COLORS, make_shapes
from sklearn_clip.toy import make_tiny_clip

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(48, image_size=32, random_state=0)


def _cosines(first, second):
    first = first / np.linalg.norm(first, axis=1, keepdims=True)
    second = second / np.linalg.norm(second, axis=1, keepdims=True)
    return np.sum(first * second, axis=1)


@pytest.mark.parametrize(("dtype", "closest"), [("float32", 0.9999), ("auto", 0.99)])
def test_image_and_text_embeddings_match_cpu(tiny_clip_path, shapes, dtype, closest):
    texts = ["a red circle", "a blue square", "a green triangle"]
    for modality, rows in (("image", shapes.images), ("text", texts)):
        on_cpu = CLIPEmbeddingTransformer(
            tiny_clip_path, modality=modality, device="cpu"
        ).fit_transform(rows)
        embedder = CLIPEmbeddingTransformer(
            tiny_clip_path, modality=modality, device="cuda", dtype=dtype
        )
        on_gpu = embedder.fit_transform(rows)
        assert on_gpu.dtype == np.float32 and on_gpu.shape == on_cpu.shape
        assert _cosines(on_cpu, on_gpu).min() > closest
    expected = torch.bfloat16 if dtype == "auto" else torch.float32
    handle = embedder._get_model()
    assert handle.dtype == expected and handle.device.type == "cuda"


def test_auto_batch_size_keeps_row_order(tiny_clip_path, image_files):
    files = [str(p) for p in image_files.values()] * 7
    fixed = CLIPEmbeddingTransformer(
        tiny_clip_path, device="cuda", dtype="float32", batch_size=5
    ).fit_transform(files)
    auto = CLIPEmbeddingTransformer(
        tiny_clip_path, device="cuda", dtype="float32", batch_size="auto"
    ).fit_transform(files)
    assert _cosines(fixed, auto).min() > 0.9999
    # Repeated files give the same row wherever they fall in the batches.
    n = len(image_files)
    np.testing.assert_allclose(auto[:n], auto[-n:], atol=1e-5)


def test_compiled_image_forward_matches_eager(tiny_clip_path, image_files):
    files = [str(p) for p in image_files.values()]
    eager = load_model(tiny_clip_path, device="cuda", dtype="float32")
    compiled = load_model(tiny_clip_path, device="cuda", dtype="float32", compile=True)
    assert _cosines(eager.encode_images(files), compiled.encode_images(files)).min() > (
        0.9999
    )


def test_zero_shot_predictions_match_cpu(tiny_clip_path, shapes):
    arguments = {"candidate_labels": list(COLORS), "templates": "openai_imagenet_7"}
    on_cpu = CLIPZeroShotClassifier(tiny_clip_path, device="cpu", **arguments)
    on_gpu = CLIPZeroShotClassifier(
        tiny_clip_path, device="cuda", dtype="float32", **arguments
    )
    probabilities = [c.fit(None).predict_proba(shapes.images) for c in (on_cpu, on_gpu)]
    np.testing.assert_allclose(*probabilities, atol=1e-3)
    agree = np.mean(on_cpu.predict(shapes.images) == on_gpu.predict(shapes.images))
    assert agree >= 0.95


def test_finetuning_on_gpu_learns_and_feeds_the_other_estimators(shapes, tmp_path):
    path = make_tiny_clip(
        tmp_path / "fast",
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        context_length=16,
    )
    torch.manual_seed(0)
    tuner = CLIPContrastiveFinetuner(
        path,
        learning_rate=3e-3,
        weight_decay=0.05,
        max_epochs=4,
        batch_size=8,
        caption_template="a {} shape",
        random_state=0,
        device="cuda",
    ).fit(shapes.images, shapes.color)
    losses = [record["train_loss"] for record in tuner.history_]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert tuner.model_.device.type == "cuda"
    assert tuner.model_.dtype == torch.bfloat16  # "auto" on a bf16 card
    classifier = CLIPZeroShotClassifier(
        tuner.model_, candidate_labels=list(COLORS), templates="a {} shape"
    ).fit(None)
    assert classifier.score(shapes.images, shapes.color) > 1 / len(COLORS)
