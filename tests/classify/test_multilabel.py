"""Multi-label zero-shot: targets, per-label probabilities, fitted thresholds."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.special import softmax
from sklearn.metrics import f1_score
from sklearn.preprocessing import MultiLabelBinarizer

from sklearn_clip import CLIPZeroShotClassifier
from sklearn_clip._backends.torch.tensors import pixel_values, tokenize

LABELS = ["bird", "cat", "dog"]
BACKGROUNDS = ["a photo.", "an image."]


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (8, 24, 24, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def label_lists():
    return [["bird"], ["cat", "dog"], [], ["bird", "cat", "dog"]] * 2


def _classifier(path, **options):
    return CLIPZeroShotClassifier(
        path, candidate_labels=LABELS, multi_label=True, **options
    )


def test_indicator_and_label_lists_fit_the_same(tiny_clip_path, images, label_lists):
    indicator = MultiLabelBinarizer(classes=LABELS).fit_transform(label_lists)
    from_lists = _classifier(tiny_clip_path).fit(images, label_lists)
    from_indicator = _classifier(tiny_clip_path).fit(images, indicator)
    np.testing.assert_array_equal(from_lists.thresholds_, from_indicator.thresholds_)
    predicted = from_lists.predict(images)
    assert predicted.shape == (8, 3) and predicted.dtype.kind == "i"
    assert set(np.unique(predicted)) <= {0, 1}
    proba = from_lists.predict_proba(images)
    np.testing.assert_array_equal(predicted, proba >= from_lists.thresholds_)
    assert 0 <= from_lists.score(images, indicator) <= 1


def test_without_labelled_images_thresholds_are_one_half(tiny_clip_path, images):
    clf = CLIPZeroShotClassifier(tiny_clip_path, multi_label=True).fit(None, LABELS)
    np.testing.assert_array_equal(clf.thresholds_, [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(clf.predict(images), clf.predict_proba(images) >= 0.5)


def test_fitted_thresholds_maximise_each_labels_f1(tiny_clip_path, images):
    indicator = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]] * 2)
    clf = _classifier(tiny_clip_path).fit(images, indicator)
    proba = clf.predict_proba(images)
    for label in range(3):
        best = f1_score(indicator[:, label], proba[:, label] >= clf.thresholds_[label])
        for cut in np.unique(proba[:, label]):
            assert best >= f1_score(indicator[:, label], proba[:, label] >= cut)


def _model_logits(handle, image_paths, texts):
    """``logits_per_image`` from the model's own forward pass."""
    pictures = [Image.open(path).convert("RGB") for path in image_paths]
    pixels = pixel_values(pictures, handle.image_config)
    input_ids, mask = tokenize(handle, texts)
    with torch.inference_mode():
        return handle.model(
            input_ids=input_ids, attention_mask=mask, pixel_values=pixels
        ).logits_per_image.numpy()


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory, images):
    folder = tmp_path_factory.mktemp("multilabel")
    paths = []
    for i, array in enumerate(images[:4]):
        Image.fromarray(array).save(folder / f"{i}.png")
        paths.append(str(folder / f"{i}.png"))
    return paths


def test_clip_label_probability_is_the_label_against_the_backgrounds(
    float32, tiny_clip, tiny_clip_path, image_paths
):
    clf = _classifier(tiny_clip_path, templates="{}", background_prompts=BACKGROUNDS)
    proba = clf.fit(None).predict_proba(image_paths)
    logits = _model_logits(tiny_clip, image_paths, [*clf.classes_, *BACKGROUNDS])
    for label in range(3):
        against = softmax(logits[:, [label, 3, 4]], axis=1)[:, 0]
        np.testing.assert_allclose(proba[:, label], against, atol=1e-5)


def test_siglip_label_probability_is_its_sigmoid(
    float32, tiny_siglip, tiny_siglip_path, image_paths
):
    clf = _classifier(tiny_siglip_path, templates="{}").fit(None)
    logits = _model_logits(tiny_siglip, image_paths, list(clf.classes_))
    expected = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(clf.predict_proba(image_paths), expected, atol=1e-5)
    assert not hasattr(clf, "background_embeddings_")


@pytest.mark.parametrize(
    "y, match",
    [
        (np.array([[0, 2, 1]] * 8), r"0/1 indicator matrix .* holds \[2\]"),
        (np.array([[0, 1, 1]] * 7), "y has 7 rows but X has 8 images"),
        (np.array([[0, 1]] * 8), "has 2 columns; pass candidate_labels"),
        ([["cat"], ["fish"]] * 4, r"not in candidate_labels: \['fish'\]"),
        ([["cat"]] * 7, "y has 7 entries but X has 8"),
        (["cat"] * 8, "one collection of labels per image"),
    ],
)
def test_fit_refuses_bad_multi_label_targets(tiny_clip_path, images, y, match):
    with pytest.raises(ValueError, match=match):
        _classifier(tiny_clip_path).fit(images, y)


# -- slow: images holding two shapes, on the demo's model -----------------------

SHAPES = ("circle", "square", "triangle", "cross", "diamond")


def _two_shapes(n, random_state):
    """``n`` images with a small shape on the left and another on the right.

    Two generated images are composed: the right one's shape pixels (those
    far from its background grey) are pasted over the left one.
    """
    from sklearn_clip.datasets import make_shapes

    pool = make_shapes(12 * n, image_size=32, random_state=random_state)
    small = pool.size == "small"
    left = np.flatnonzero(small & (pool.position == "left"))
    right = np.flatnonzero(small & (pool.position == "right"))
    rng = np.random.default_rng(random_state)
    images, labels = [], []
    while len(images) < n:
        a, b = rng.choice(left), rng.choice(right)
        if pool.shape[a] == pool.shape[b]:
            continue
        image, other = pool.images[a].copy(), pool.images[b].astype(int)
        background = np.median(other.reshape(-1, 3), axis=0)
        shape_pixels = np.abs(other - background).sum(axis=-1) > 90
        image[shape_pixels] = other[shape_pixels]
        images.append(image)
        labels.append([pool.shape[a], pool.shape[b]])
    return np.stack(images), labels


@pytest.mark.slow
def test_acceptance_3_fitted_thresholds_do_no_worse_than_one_half(demo_model_path):
    from sklearn_clip.datasets import COLORS

    X_fit, y_fit = _two_shapes(300, random_state=201)
    X_test, y_test = _two_shapes(500, random_state=202)
    clf = CLIPZeroShotClassifier(
        demo_model_path,
        candidate_labels=list(SHAPES),
        templates=["a {}", *(f"a {color} {{}}" for color in COLORS)],
        multi_label=True,
        background_prompts=["something", "something on a grey background"],
    ).fit(X_fit, y_fit)
    truth = MultiLabelBinarizer(classes=clf.classes_).fit_transform(y_test)
    predicted = clf.predict(X_test)
    assert predicted.shape == (500, 5) and set(np.unique(predicted)) <= {0, 1}
    fitted = f1_score(truth, predicted, average="micro")
    fixed = f1_score(truth, clf.predict_proba(X_test) >= 0.5, average="micro")
    print(f"micro-F1: fitted thresholds {fitted:.3f}, 0.5 {fixed:.3f}")
    print(f"thresholds_: {dict(zip(clf.classes_, clf.thresholds_.round(3)))}")
    assert fitted >= fixed
