"""Every supported model family, end to end, against transformers itself.

Each family's tiny checkpoint is written the way transformers 5 writes it
(``processor_config.json`` only) and the legacy way (``preprocessor_config.json``),
and the references are transformers' own: its zero-shot pipeline on the same
directory, and the family's own processor, tokenizer and feature methods.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPEmbeddingTransformer,
    CLIPZeroShotClassifier,
    load_model,
)
from sklearn_clip._encoding.preprocess import ImageConfig
from sklearn_clip._models.loading import FINETUNE_FAMILIES, SUPPORTED_FAMILIES
from sklearn_clip.toy import FAMILIES, make_tiny_clip

LABELS = ["a red circle", "a blue square", "a green star"]

# Every test here compares with transformers' own float32 forward passes.
pytestmark = pytest.mark.usefixtures("one_torch_thread", "float32_module")


@pytest.fixture(scope="module")
def images(gradient):
    # Non-square, of different shapes: each is resized and cropped on its own.
    shapes = [(40, 30), (30, 52), (33, 33), (61, 47)]
    return [Image.fromarray(gradient(h, w, seed)) for seed, (h, w) in enumerate(shapes)]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    made = {}

    def checkpoint(family, layout="transformers5"):
        if (family, layout) not in made:
            folder = tmp_path_factory.mktemp(f"{family}-{layout}")
            made[family, layout] = make_tiny_clip(folder, family=family, layout=layout)
        return made[family, layout]

    return checkpoint


def _pipeline_scores(directory, images, classes):
    """transformers' zero-shot pipeline on ``directory``, columns as ``classes``."""
    pipe = transformers.pipeline(
        "zero-shot-image-classification", model=directory, device="cpu"
    )
    rows = []
    for image in images:
        out = pipe(image, candidate_labels=list(classes), hypothesis_template="{}")
        scores = {item["label"]: item["score"] for item in out}
        rows.append([scores[c] for c in classes])
    return np.array(rows)


def _our_scores(model, images):
    clf = CLIPZeroShotClassifier(
        model, candidate_labels=LABELS, templates=["{}"], device="cpu"
    ).fit(None)
    # The pipeline scores SigLIP families with a sigmoid, the others a softmax.
    scores = clf.predict_sigmoid if clf.logit_bias_ is not None else clf.predict_proba
    return clf.classes_, scores(images)


def _tolerance(handle):
    # Our torch resize against transformers' Pillow backend (torchvision is
    # not installed) differs by rounding; where the processor runs itself,
    # both sides compute the same thing.
    return 5e-4 if isinstance(handle.image_config, ImageConfig) else 1e-5


def test_families_are_the_ones_supported():
    mapping = transformers.models.auto.modeling_auto
    zero_shot = set(mapping.MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES)
    assert set(FAMILIES) == set(SUPPORTED_FAMILIES) <= zero_shot


@pytest.mark.parametrize("layout", ["transformers5", "legacy"])
@pytest.mark.parametrize("family", FAMILIES)
def test_zero_shot_equals_transformers_pipeline(family, layout, checkpoints, images):
    directory = checkpoints(family, layout)
    names = {p.name for p in Path(directory).iterdir()}
    if layout == "legacy":
        assert "preprocessor_config.json" in names
    else:
        assert "preprocessor_config.json" not in names
        assert "image_processor" in json.loads(
            open(f"{directory}/processor_config.json").read()
        )
    handle = load_model(directory, device="cpu")
    assert handle.family == family
    classes, ours = _our_scores(directory, images)
    theirs = _pipeline_scores(directory, images, classes)
    np.testing.assert_allclose(ours, theirs, atol=_tolerance(handle), rtol=0)


def _cosine(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def _features(output):
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@pytest.mark.parametrize("family", FAMILIES)
def test_embeddings_equal_the_familys_own_processor_and_features(
    family, checkpoints, images
):
    directory = checkpoints(family)
    processor = transformers.AutoProcessor.from_pretrained(directory)
    model = transformers.AutoModel.from_pretrained(directory).eval()
    with torch.no_grad():
        inputs = processor.image_processor(images=images, return_tensors="pt")
        image_ref = _features(model.get_image_features(**inputs)).numpy()
        text_inputs = processor.tokenizer(
            LABELS, return_tensors="pt", **_pipeline_padding(family)
        )
        text_ref = _features(model.get_text_features(**text_inputs)).numpy()
    image_ours = CLIPEmbeddingTransformer(directory, device="cpu").fit_transform(images)
    text_ours = CLIPEmbeddingTransformer(
        directory, modality="text", device="cpu"
    ).fit_transform(LABELS)
    assert image_ours.shape == image_ref.shape
    assert _cosine(image_ours, image_ref).min() >= 0.9999
    assert _cosine(text_ours, text_ref).min() >= 0.9999


def _pipeline_padding(family):
    # What transformers' zero-shot pipeline asks the tokenizer for.
    if "siglip" in family:
        return {"padding": "max_length", "max_length": 64, "truncation": True}
    return {"padding": True}


@pytest.mark.parametrize("family", FINETUNE_FAMILIES)
def test_families_with_a_temperature_fine_tune(family, checkpoints, images):
    tuner = CLIPContrastiveFinetuner(
        checkpoints(family),
        max_epochs=1,
        batch_size=4,
        learning_rate=1e-3,
        validation_fraction=None,
        device="cpu",
        random_state=0,
    ).fit(images, LABELS + LABELS[:1])
    start = load_model(checkpoints(family), device="cpu").model.state_dict()
    tuned = tuner.model_.model.state_dict()
    assert any(not torch.equal(start[k], tuned[k]) for k in start)
    assert tuner.transform(images).shape[0] == len(images)


def test_fine_tuning_blip_is_refused_before_any_work(checkpoints, monkeypatch):
    from sklearn_clip._train import finetuner as _finetune

    def no_work(*args, **kwargs):
        raise AssertionError("images were prepared before the refusal")

    monkeypatch.setattr(_finetune, "prepare_pairs", no_work)
    tuner = CLIPContrastiveFinetuner(checkpoints("blip"), device="cpu")
    with pytest.raises(ValueError, match="'blip'.*not supported.*clip, metaclip_2"):
        tuner.fit([np.zeros((8, 8, 3), np.uint8)] * 2, ["a", "b"])


@pytest.mark.parametrize("family", ["clip", "siglip", "siglip2"])
def test_fine_tuned_round_trip_through_transformers_pipeline(
    family, checkpoints, images, tmp_path
):
    tuner = CLIPContrastiveFinetuner(
        checkpoints(family),
        max_epochs=1,
        batch_size=4,
        learning_rate=1e-3,
        validation_fraction=None,
        device="cpu",
        random_state=0,
    ).fit(images, LABELS + LABELS[:1])
    saved = tuner.save_pretrained(tmp_path / "tuned")
    # transformers 5 reads processor_config.json, transformers 4 the other.
    written = {p.name for p in saved.iterdir()}
    assert {"processor_config.json", "preprocessor_config.json"} <= written
    classes, ours = _our_scores(tuner.model_, images)
    theirs = _pipeline_scores(str(saved), images, classes)
    np.testing.assert_allclose(ours, theirs, atol=_tolerance(tuner.model_), rtol=0)
    # And what we read back is what we saved.
    _, again = _our_scores(str(saved), images)
    np.testing.assert_allclose(again, ours, atol=1e-6, rtol=0)


def test_unsupported_family_fails_at_load_with_the_list(checkpoints, tmp_path):
    folder = tmp_path / "clipseg"
    folder.mkdir()
    for path in Path(checkpoints("clip")).iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "clipseg"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="'clipseg' model.*supports.*clip, metaclip_2"):
        load_model(folder, device="cpu")
    with pytest.raises(ValueError, match="siglip2, align, altclip, chinese_clip, blip"):
        CLIPEmbeddingTransformer(str(folder), device="cpu").fit([np.zeros((4, 4, 3))])


@pytest.mark.parametrize("on_error", ["raise", "nan"])
def test_no_image_processor_config_is_an_error(checkpoints, tmp_path, on_error):
    folder = tmp_path / "bare"
    folder.mkdir()
    for path in Path(checkpoints("clip")).iterdir():
        if path.name != "processor_config.json":
            (folder / path.name).write_bytes(path.read_bytes())
    embedder = CLIPEmbeddingTransformer(str(folder), device="cpu", on_error=on_error)
    with pytest.raises(OSError) as error:
        embedder.fit([np.zeros((4, 6, 3), np.uint8)])
    message = str(error.value)
    assert str(folder) in message
    assert "preprocessor_config.json" in message and "processor_config.json" in message


def test_siglip_text_is_padded_to_64_tokens(checkpoints):
    from sklearn_clip._backends.torch.tensors import tokenize

    handle = load_model(checkpoints("siglip2"), device="cpu")
    input_ids, mask = tokenize(handle, ["a cat", "a photo of a big dog"])
    assert input_ids.shape == (2, 64) and mask is None
    clip = load_model(checkpoints("clip"), device="cpu")
    input_ids, mask = tokenize(clip, ["a cat", "a photo of a big dog"])
    assert input_ids.shape == (2, 8) and mask.sum(1).tolist() == [4, 8]
