"""CLIP_benchmark's own evaluation code runs a sklearn-clip model (a PyTorch
one, an export and a fine-tuned one) through benchmark_model, and agrees
with the package's estimators and evaluate()."""

import sys
import types

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sklearn_clip import CLIPContrastiveFinetuner, CLIPZeroShotClassifier, export_model
from sklearn_clip.datasets import make_shapes
from sklearn_clip.evaluate import benchmark_model, evaluate

torch = pytest.importorskip("torch")
# These two modules import only torch, tqdm and scikit-learn.
zeroshot_classification = pytest.importorskip(
    "clip_benchmark.metrics.zeroshot_classification"
)
zeroshot_retrieval = pytest.importorskip("clip_benchmark.metrics.zeroshot_retrieval")

CLASSES = ["circle", "square", "triangle", "cross", "diamond"]


class _Labelled(torch.utils.data.Dataset):
    """What CLIP_benchmark's dataset builder gives: transformed images, class
    indices, and ``classes``."""

    def __init__(self, images, targets, transform):
        self.images, self.targets, self.transform = images, targets, transform
        self.classes = CLASSES

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.targets[i]


@pytest.fixture(scope="module")
def shapes():
    data = make_shapes(30, image_size=16, shapes=CLASSES, random_state=4)
    images = [Image.fromarray(image) for image in data.images]
    return images, np.array([CLASSES.index(s) for s in data.shape])


def _clip_benchmark_zero_shot(model, transform, tokenizer, images, targets):
    """CLIP_benchmark's zero-shot classification: its classifier from the
    prompts, its logits over a data loader, its predictions.

    (Its ``evaluate`` ends in ``accuracy()``, whose ``float()`` of a 1-element
    array NumPy 2.x refuses; the two steps before it are the whole method.)
    """
    loader = torch.utils.data.DataLoader(
        _Labelled(images, targets, transform), batch_size=8
    )
    weights = zeroshot_classification.zero_shot_classifier(
        model, tokenizer, CLASSES, ["a photo of a {c}."], "cpu", amp=False
    )
    logits, truth = zeroshot_classification.run_classification(
        model, weights, loader, "cpu", amp=False
    )
    assert truth.tolist() == list(targets)
    return np.array(CLASSES)[logits.argmax(axis=1).numpy()]


def _ours(model, images, targets):
    classifier = CLIPZeroShotClassifier(
        model, candidate_labels=CLASSES, templates="a photo of a {}.", dtype="float32"
    ).fit(None)
    predicted = classifier.predict(images)
    return predicted, np.array(CLASSES)[targets]


@pytest.fixture(scope="module")
def exported(tiny_clip_path, tmp_path_factory):
    return export_model(tiny_clip_path, tmp_path_factory.mktemp("export") / "onnx")


@pytest.mark.parametrize("which", ["torch", "export"])
def test_zero_shot_through_clip_benchmark_equals_ours(
    which, tiny_clip_path, exported, shapes
):
    from sklearn.metrics import accuracy_score

    source = tiny_clip_path if which == "torch" else exported
    images, targets = shapes
    model, transform, tokenizer = benchmark_model(source, dtype="float32")
    theirs = _clip_benchmark_zero_shot(model, transform, tokenizer, images, targets)
    predicted, truth = _ours(source, images, targets)
    assert theirs.tolist() == predicted.tolist()
    assert 0 < accuracy_score(truth, theirs) < 1


def test_retrieval_through_clip_benchmark_equals_evaluate(tiny_clip_path, tmp_path):
    data = make_shapes(8, image_size=16, random_state=5)
    rows = []
    for i, image in enumerate(data.images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        rows += [
            {"image": f"{i}.png", "caption": f"{data.captions[i]} {j}"}
            for j in range(5)
        ]
    table = pd.DataFrame(rows)
    table.to_csv(tmp_path / "pairs.csv", index=False)
    report = evaluate(
        tiny_clip_path, tmp_path / "pairs.csv", k=(1, 5), dtype="float32",
        progress=False,
    )  # fmt: skip
    ours = report.results.set_index("metric")["value"]

    model, transform, tokenizer = benchmark_model(tiny_clip_path, dtype="float32")
    items = [
        (transform(Image.open(tmp_path / f"{i}.png")), list(group["caption"]))
        for i, (_, group) in enumerate(table.groupby("image", sort=False))
    ]
    loader = torch.utils.data.DataLoader(
        items,
        batch_size=3,
        collate_fn=lambda batch: (
            torch.stack([b[0] for b in batch]),
            [b[1] for b in batch],
        ),
    )
    found = zeroshot_retrieval.evaluate(
        model, loader, tokenizer, "cpu", amp=False, recall_k_list=[1, 5]
    )
    for k in (1, 5):
        # CLIP_benchmark's "image retrieval" is text -> image.
        assert found[f"image_retrieval_recall@{k}"] == pytest.approx(
            ours[f"text_to_image_recall@{k}"], abs=1e-7
        )
        assert found[f"text_retrieval_recall@{k}"] == pytest.approx(
            ours[f"image_to_text_recall@{k}"], abs=1e-7
        )


def test_a_fine_tuned_model_embeds_as_the_tuner_does(tiny_clip_path, shapes, float32):
    images, targets = shapes
    captions = [f"a {CLASSES[t]}" for t in targets]
    tuner = CLIPContrastiveFinetuner(
        tiny_clip_path, max_epochs=1, batch_size=8, validation_fraction=None
    )
    tuner.fit(images, captions)
    model, transform, tokenizer = benchmark_model(tuner)
    texts = model.encode_text(tokenizer(captions[:4])).numpy()
    np.testing.assert_allclose(
        texts, tuner.transform(captions[:4], modality="text"), rtol=0, atol=1e-6
    )
    pixels = torch.stack([transform(image) for image in images[:4]])
    np.testing.assert_allclose(
        model.encode_image(pixels).numpy(), tuner.transform(images[:4]), atol=1e-5
    )


def test_registered_as_a_clip_benchmark_model_type(tiny_clip_path, monkeypatch):
    # clip_benchmark.models imports its open_clip and Japanese CLIP loaders,
    # which import torchvision (not installable beside the CPU torch here).
    # Stand-ins for those two loader modules, in this test only, let the
    # loader table itself be imported; nothing of theirs is run.
    for name, loader in [
        ("clip_benchmark.models.open_clip", "load_open_clip"),
        ("clip_benchmark.models.japanese_clip", "load_japanese_clip"),
    ]:
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**{loader: None}))
    monkeypatch.delitem(sys.modules, "clip_benchmark.models", raising=False)
    import clip_benchmark.models as registry

    monkeypatch.setitem(registry.TYPE2FUNC, "sklearn_clip", benchmark_model)
    monkeypatch.setattr(
        registry, "MODEL_TYPES", [*registry.MODEL_TYPES, "sklearn_clip"]
    )
    model, transform, tokenizer = registry.load_clip(
        "sklearn_clip",
        str(tiny_clip_path),
        pretrained=None,
        cache_dir=None,
        device="cpu",
    )
    image = transform(Image.new("RGB", (30, 20), "blue"))
    assert tuple(model.encode_image(image[None]).shape) == (1, 32)
    assert tuple(model.encode_text(tokenizer(["a blue square"])).shape) == (1, 32)
