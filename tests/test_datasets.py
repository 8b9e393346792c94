import re

import numpy as np
import pandas as pd
import pytest

from sklearn_clip.datasets import (
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    TEMPLATES,
    make_shapes,
)

ALL_PAIRS = {(c, s) for c in COLORS for s in SHAPES}


def _shape_masks(images, blur=True):
    """Pixels of the shape, found independently of the generator's geometry.

    The backgrounds are grey, so any strongly saturated pixel belongs to the shape.
    A 3x3 box blur keeps the pixel noise from passing the threshold; noiseless
    images skip it to keep the exact outline.
    """
    images = images.astype(np.float32)
    if blur:
        side = images.shape[1]
        padded = np.pad(images, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="edge")
        images = sum(
            padded[:, i : i + side, j : j + side] for i in range(3) for j in range(3)
        )
        images /= 9
    return (images.max(axis=-1) - images.min(axis=-1)) > 60


def _words(text):
    return set(re.findall(r"[a-z]+", text))


def test_bunch_contents_shapes_and_dtypes():
    data = make_shapes(n_samples=50, image_size=32, random_state=0)
    assert data.images.shape == (50, 32, 32, 3)
    assert data.images.dtype == np.uint8
    for key in ["captions", "color", "shape", "size", "position"]:
        assert data[key].shape == (50,)
        assert data[key].dtype == object
        assert all(isinstance(value, str) for value in data[key])
    assert set(data.color) <= set(COLORS)
    assert set(data.shape) <= set(SHAPES)
    assert set(data.size) <= set(SIZES)
    assert set(data.position) <= set(POSITIONS)
    assert data.color_names == list(COLORS)
    assert data.shape_names == list(SHAPES)
    assert data.frame is None
    assert "shape" in data.DESCR


def test_module_constants():
    assert len(COLORS) >= 6 and len(SHAPES) >= 5
    for rgb in COLORS.values():
        assert len(rgb) == 3 and all(0 <= channel <= 255 for channel in rgb)
    assert isinstance(TEMPLATES, tuple) and len(TEMPLATES) >= 8
    for template in TEMPLATES:
        assert "{color}" in template or "{shape}" in template


def test_same_seed_same_data_different_seed_different_data():
    a = make_shapes(n_samples=200, random_state=42)
    b = make_shapes(n_samples=200, random_state=42)
    c = make_shapes(n_samples=200, random_state=43)
    np.testing.assert_array_equal(a.images, b.images)
    for key in ["captions", "color", "shape", "size", "position"]:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.captions, c.captions)


def test_random_state_instance_is_accepted_and_advanced():
    rng = np.random.RandomState(0)
    first = make_shapes(n_samples=20, random_state=rng)
    second = make_shapes(n_samples=20, random_state=rng)
    assert not np.array_equal(first.images, second.images)
    again = make_shapes(n_samples=20, random_state=np.random.RandomState(0))
    np.testing.assert_array_equal(first.images, again.images)


def test_all_labels_are_drawn():
    data = make_shapes(n_samples=1000, random_state=0)
    assert set(zip(data.color, data.shape)) == ALL_PAIRS
    assert set(data.size) == set(SIZES)
    assert set(data.position) == set(POSITIONS)


def test_holdout_combinations_never_appear():
    holdout = [("red", "circle"), ("blue", "square")]
    data = make_shapes(n_samples=2000, holdout_combinations=holdout, random_state=0)
    pairs = set(zip(data.color, data.shape))
    assert pairs == ALL_PAIRS - set(holdout)
    # Their colors and shapes still appear, with other partners.
    assert {"red", "blue"} <= set(data.color)
    assert {"circle", "square"} <= set(data.shape)


def test_only_combinations_are_generated():
    only = [("red", "circle"), ("green", "triangle")]
    data = make_shapes(n_samples=300, only_combinations=only, random_state=0)
    assert set(zip(data.color, data.shape)) == set(only)
    # Every image really shows the requested pairs, including the colour pixels.
    masks = _shape_masks(data.images)
    red = data.images[data.color == "red"][masks[data.color == "red"]].mean(axis=0)
    assert red[0] > 150 and red[1] < 80 and red[2] < 80


def test_only_and_holdout_combine():
    only = [("red", "circle"), ("green", "triangle")]
    data = make_shapes(
        n_samples=100,
        only_combinations=only,
        holdout_combinations=[("red", "circle")],
        random_state=0,
    )
    assert set(zip(data.color, data.shape)) == {("green", "triangle")}


def test_colors_and_shapes_restrict_the_draws():
    data = make_shapes(
        n_samples=200, colors=["red", "blue"], shapes=["cross"], random_state=0
    )
    assert set(data.color) == {"red", "blue"}
    assert set(data.shape) == {"cross"}
    assert data.color_names == ["red", "blue"]
    assert data.shape_names == ["cross"]


@pytest.mark.parametrize("noise", [0.0, 0.05, 0.1])
def test_shape_pixels_have_the_named_color(noise):
    data = make_shapes(n_samples=600, noise=noise, random_state=0)
    masks = _shape_masks(data.images)
    names = list(COLORS)
    palette = np.array([COLORS[name] for name in names], dtype=float)
    hits = 0
    for image, mask, color in zip(data.images, masks, data.color):
        assert mask.sum() > 10
        # The median ignores the background pixels that the blur adds at the edges.
        typical = np.median(image[mask], axis=0)
        nearest = names[np.argmin(((palette - typical) ** 2).sum(axis=1))]
        hits += nearest == color
    assert hits / len(data.color) > 0.99


def test_background_is_grey_with_the_requested_noise():
    clean = make_shapes(n_samples=200, noise=0.0, random_state=0)
    # Corners are background for every size and position.
    corners = clean.images[:, :4, :4].reshape(200, -1, 3)
    assert (corners == corners[:, :1]).all()
    assert (corners[:, 0].max(axis=1) == corners[:, 0].min(axis=1)).all()

    noisy = make_shapes(n_samples=200, noise=0.05, random_state=0)
    corners = noisy.images[:, :8, :8].reshape(200, -1, 3).astype(float)
    std = (corners - corners.mean(axis=1, keepdims=True)).std() / 255
    assert 0.04 < std < 0.06


def test_positions_and_sizes_match_the_labels():
    data = make_shapes(n_samples=600, image_size=64, noise=0.0, random_state=0)
    masks = _shape_masks(data.images, blur=False)
    ys, xs = np.indices((64, 64))
    area = masks.sum(axis=(1, 2))
    cx = (masks * xs).sum(axis=(1, 2)) / area
    cy = (masks * ys).sum(axis=(1, 2)) / area
    pos = data.position
    assert (cx[pos == "left"] < 24).all() and (cx[pos == "right"] > 40).all()
    assert (cy[pos == "top"] < 24).all() and (cy[pos == "bottom"] > 40).all()
    center = pos == "center"
    assert (np.abs(cx[center] - 32) < 8).all() and (np.abs(cy[center] - 32) < 8).all()
    for shape in SHAPES:
        small = area[(data.shape == shape) & (data.size == "small")]
        large = area[(data.shape == shape) & (data.size == "large")]
        assert large.min() > small.max()


def test_shapes_are_distinguishable():
    data = make_shapes(n_samples=1000, noise=0.0, random_state=0)
    fill, bottom, diagonal = [], [], []
    for mask in _shape_masks(data.images, blur=False):
        ys, xs = np.nonzero(mask)
        half_h, half_w = (np.ptp(ys) + 1) / 2, (np.ptp(xs) + 1) / 2
        dy, dx = ys - (ys.min() + ys.max()) / 2, xs - (xs.min() + xs.max()) / 2
        fill.append(len(ys) / (4 * half_h * half_w))
        bottom.append(np.mean(dy > 0))
        diagonal.append(np.mean((abs(dy) > 0.35 * half_h) & (abs(dx) > 0.35 * half_w)))
    fill, bottom, diagonal = map(np.asarray, (fill, bottom, diagonal))
    shape = data.shape
    assert (fill[shape == "square"] > 0.95).all()
    assert ((fill[shape == "circle"] > 0.65) & (fill[shape == "circle"] < 0.9)).all()
    assert (fill[np.isin(shape, ["triangle", "cross", "diamond"])] < 0.65).all()
    # The triangle points up, so most of its pixels lie in the lower half.
    assert (bottom[shape == "triangle"] > 0.6).all()
    assert (bottom[shape != "triangle"] < 0.6).all()
    # A diamond reaches the diagonals of its bounding box, a cross does not.
    assert (diagonal[shape == "diamond"] > 0.03).all()
    assert np.mean(diagonal[shape == "cross"] < 0.03) > 0.95


def test_captions_are_varied_and_consistent_with_labels():
    data = make_shapes(n_samples=2000, random_state=0)
    both = 0
    for caption, color, shape, size, position in zip(
        data.captions, data.color, data.shape, data.size, data.position
    ):
        words = _words(caption)
        assert words & set(COLORS) <= {color}, caption
        assert words & set(SHAPES) <= {shape}, caption
        assert words & set(SIZES) <= {size}, caption
        assert words & set(POSITIONS) <= {position}, caption
        assert color in words or shape in words, caption
        both += color in words and shape in words
        assert not re.search(r"\ba [aeiou]", caption), caption
    assert both / len(data.captions) > 0.6
    # Strip the labels to recover the template forms in use.
    forms = set()
    for caption in data.captions:
        for word in [*COLORS, *SHAPES, *SIZES, *POSITIONS]:
            caption = re.sub(rf"\b{word}\b", "_", caption)
        forms.add(re.sub(r"\ban? _", "a _", caption))
    assert len(forms) >= 8
    assert "an orange" in " ".join(data.captions)


def test_as_frame():
    data = make_shapes(n_samples=30, image_size=32, as_frame=True, random_state=0)
    frame = data.frame
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == [
        "image",
        "caption",
        "color",
        "shape",
        "size",
        "position",
    ]
    assert len(frame) == 30
    assert frame["image"].dtype == object
    for i in range(30):
        assert frame["image"].iloc[i].shape == (32, 32, 3)
        np.testing.assert_array_equal(frame["image"].iloc[i], data.images[i])
    np.testing.assert_array_equal(frame["caption"].to_numpy(), data.captions)
    np.testing.assert_array_equal(frame["color"].to_numpy(), data.color)
    np.testing.assert_array_equal(frame["position"].to_numpy(), data.position)


def test_return_X_y():
    data = make_shapes(n_samples=20, random_state=0)
    images, captions = make_shapes(n_samples=20, return_X_y=True, random_state=0)
    np.testing.assert_array_equal(images, data.images)
    np.testing.assert_array_equal(captions, data.captions)

    images, captions = make_shapes(
        n_samples=20, return_X_y=True, as_frame=True, random_state=0
    )
    assert isinstance(images, pd.Series) and isinstance(captions, pd.Series)
    np.testing.assert_array_equal(images.iloc[3], data.images[3])
    np.testing.assert_array_equal(captions.to_numpy(), data.captions)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_samples": 0}, "n_samples must be >= 1"),
        ({"n_samples": 2.5}, "n_samples must be an integer"),
        ({"n_samples": "10"}, "n_samples must be an integer"),
        ({"n_samples": True}, "n_samples must be an integer"),
        ({"image_size": 8}, "image_size must be >= 16"),
        ({"image_size": 64.0}, "image_size must be an integer"),
        ({"noise": -0.1}, "noise must be a finite number >= 0"),
        ({"noise": float("nan")}, "noise must be a finite number >= 0"),
        ({"noise": float("inf")}, "noise must be a finite number >= 0"),
        ({"noise": "high"}, "noise must be a finite number >= 0"),
        ({"colors": ["red", "pink"]}, r"Unknown colors \['pink'\]"),
        ({"colors": []}, "colors must name at least one entry"),
        ({"shapes": ["hexagon"]}, r"Unknown shapes \['hexagon'\]"),
        (
            {"holdout_combinations": [("pink", "circle")]},
            "Unknown color in holdout_combinations",
        ),
        (
            {"only_combinations": [("red", "hexagon")]},
            "Unknown shape in only_combinations",
        ),
        (
            {"holdout_combinations": ("red", "circle")},
            "must be a \\(color, shape\\) pair, got 'red'",
        ),
        (
            {"only_combinations": [("red", "circle", "small")]},
            "must be a \\(color, shape\\) pair",
        ),
        (
            {
                "only_combinations": [("red", "circle")],
                "holdout_combinations": [("red", "circle")],
            },
            "No \\(color, shape\\) combination is left",
        ),
        (
            {"colors": ["red"], "only_combinations": [("blue", "circle")]},
            "No \\(color, shape\\) combination is left",
        ),
    ],
)
def test_invalid_parameters_raise(params, match):
    with pytest.raises(ValueError, match=match):
        make_shapes(n_samples=params.pop("n_samples", 10), **params)
