"""An open_clip checkpoint through every estimator, the fine-tuner and an export.

Each answer from the open_clip folder equals the answer from its converted
form (``save_pretrained``: transformers' layout), which transformers' own
``from_pretrained`` reads; the export answers as the PyTorch model does.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import AutoModel

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPEmbeddingTransformer,
    CLIPFewShotClassifier,
    CLIPNearestNeighbors,
    CLIPZeroShotClassifier,
    export_model,
    load_model,
)
from sklearn_clip._backends.torch.open_clip import BIDIRECTIONAL, is_bidirectional
from sklearn_clip.cli import main
from sklearn_clip.datasets import make_shapes

pytestmark = pytest.mark.usefixtures("one_torch_thread", "float32_module")

CPU = {"device": "cpu", "dtype": "float32"}
LABELS = ["red circle", "blue square", "green triangle"]


@pytest.fixture(scope="module")
def data():
    return make_shapes(24, image_size=32, random_state=0)


@pytest.fixture(scope="module", params=["vit-gelu-64", "mobileclip-text"])
def pair(request, open_clip_checkpoints, tmp_path_factory):
    """``(open_clip folder, its converted folder, open_clip's reference)``."""
    reference = open_clip_checkpoints[request.param]
    source = str(reference["path"])
    converted = tmp_path_factory.mktemp(request.param) / "converted"
    load_model(source, **CPU).save_pretrained(converted)
    return source, str(converted), reference


def _same(estimator, pair, run):
    """``run(estimator with model=...)`` for the open_clip folder and the
    converted one, which must give the same numbers."""
    source, converted, _ = pair
    ours = run(estimator.set_params(model=source))
    theirs = run(estimator.set_params(model=converted))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    return ours


def test_zero_shot_few_shot_embeddings_and_search_answer_alike(pair, data):
    images = list(data.images)
    zero_shot = CLIPZeroShotClassifier(candidate_labels=LABELS, **CPU)
    probabilities = _same(zero_shot, pair, lambda e: e.fit().predict_proba(images))
    assert probabilities.shape == (24, 3)
    labels = data.shape
    few_shot = CLIPFewShotClassifier(
        candidate_labels=sorted(set(labels)), cv=2, random_state=0, **CPU
    )
    _same(few_shot, pair, lambda e: e.fit(images, labels).predict_proba(images))
    embed = CLIPEmbeddingTransformer(**CPU)
    _same(embed, pair, lambda e: e.fit_transform(images))
    _same(embed.set_params(modality="text"), pair, lambda e: e.fit_transform(LABELS))
    search = CLIPNearestNeighbors(n_neighbors=3, **CPU)

    def nearest(estimator):
        distances, indices = estimator.fit(images).kneighbors(
            LABELS, query_modality="text"
        )
        return np.concatenate([distances, indices], axis=1)

    _same(search, pair, nearest)


def test_transformers_reads_the_converted_model(pair):
    source, converted, reference = pair
    bidirectional = is_bidirectional(load_model(source, **CPU).model)
    # transformers' own class: a bidirectional text tower needs the attention
    # function that importing sklearn-clip's PyTorch backend registers.
    options = {"attn_implementation": BIDIRECTIONAL} if bidirectional else {}
    model = AutoModel.from_pretrained(converted, **options).eval()
    again = load_model(converted, **CPU)
    texts = ["a photo of a red circle", "two dogs"]
    tokens = reference["tokenizer"](texts)
    pixels = torch.stack(
        [
            reference["transform"](Image.fromarray(image))
            for image in make_shapes(3, image_size=40).images
        ]
    )
    with torch.no_grad():
        theirs = reference["model"].encode_text(tokens)
        features = model.get_text_features(input_ids=tokens).pooler_output
        images = model.get_image_features(pixel_values=pixels).pooler_output
        expected = reference["model"].encode_image(pixels)
    torch.testing.assert_close(features, theirs, rtol=0, atol=1e-5)
    torch.testing.assert_close(images, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        again.encode_texts(texts, normalize=False), theirs.numpy(), atol=1e-5
    )


@pytest.mark.slow
def test_an_onnx_export_answers_as_the_model(pair, tmp_path):
    source, _, _ = pair
    exported = load_model(export_model(source, tmp_path / "onnx"))
    model = load_model(source, **CPU)
    images = list(make_shapes(4, image_size=32, random_state=1).images)
    np.testing.assert_allclose(
        exported.encode_images(images), model.encode_images(images), atol=1e-4
    )
    np.testing.assert_allclose(
        exported.encode_texts(LABELS), model.encode_texts(LABELS), atol=1e-4
    )


@pytest.mark.slow
def test_fine_tuning_trains_alike_and_saves_transformers_layout(pair, data, tmp_path):
    source, converted, _ = pair
    images = list(data.images)
    labels = data.shape
    settings = {
        "max_epochs": 1,
        "batch_size": 8,
        "validation_fraction": None,
        "caption_template": "a {} shape",
        "random_state": 0,
        **CPU,
    }
    tuned = CLIPContrastiveFinetuner(source, **settings).fit(images, labels)
    again = CLIPContrastiveFinetuner(converted, **settings).fit(images, labels)
    losses = [record["train_loss"] for record in tuned.history_]
    assert losses == pytest.approx([r["train_loss"] for r in again.history_], abs=1e-5)
    saved = tuned.save_pretrained(tmp_path / "tuned")
    assert (saved / "config.json").exists()
    reloaded = load_model(str(saved), **CPU)
    np.testing.assert_allclose(
        reloaded.encode_texts(LABELS), tuned.model_.encode_texts(LABELS), atol=1e-5
    )


def test_the_command_takes_an_open_clip_folder(pair, data, tmp_path):
    source, converted, _ = pair
    paths = []
    for i, image in enumerate(data.images[:4]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    (tmp_path / "files.txt").write_text("\n".join(map(str, paths)))
    written = {}
    for name, model in (("open_clip", source), ("converted", converted)):
        written[name] = tmp_path / f"{name}.csv"
        argv = [
            "zero-shot",
            "--model",
            model,
            "--file-list",
            str(tmp_path / "files.txt"),
        ]
        argv += ["--labels", ",".join(LABELS), "--output", str(written[name])]
        assert main([*argv, "--device", "cpu"]) == 0
    ours, theirs = (pd.read_csv(path) for path in written.values())
    columns = [c for c in ours.columns if c.startswith("proba_")]
    assert len(columns) == 3
    np.testing.assert_allclose(ours[columns], theirs[columns], atol=1e-6)
