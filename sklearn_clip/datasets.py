"""Synthetic image-caption datasets for demos and tests.

The generators here need no download: they draw simple coloured shapes with numpy,
so a demo or a test can build thousands of (image, caption) pairs in a fraction of a
second.
"""

import numbers
import re
from itertools import product

import numpy as np
from sklearn.utils import Bunch, check_random_state

from sklearn_clip._drawing import render

__all__ = [
    "COLORS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "TEMPLATES",
    "make_photo",
    "make_shapes",
]

# Saturated hues that stay far apart in RGB space even after per-sample jitter, and
# far from the grey backgrounds, so that the colour of a shape is never ambiguous.
COLORS = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 225),
    "yellow": (235, 215, 30),
    "purple": (140, 40, 190),
    "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "cross", "diamond")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "center")

# Caption forms; each names the color or the shape, and most name both.
TEMPLATES = (
    "a {color} {shape}",
    "a {size} {color} {shape}",
    "a {shape} that is {color}",
    "a {size} {color} {shape} {where}",
    "a {color} {shape} {where}",
    "something {color} {where}",
    "a picture of a {color} {shape}",
    "a photo of a {size} {color} {shape}",
    "a {color} {shape}, {size}",
    "a {size} {shape} {where}",
    "the {shape} is {color}",
    "a {color} {shape} on a grey background",
)
_WHERE = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
# Shape centres as (x, y) fractions of the image side; large shapes still fit.
_ANCHORS = np.array([[0.27, 0.5], [0.73, 0.5], [0.5, 0.27], [0.5, 0.73], [0.5, 0.5]])
# Half-extent of a shape, as a fraction of the image side, per size.
_RADII = np.array([[0.10, 0.13], [0.19, 0.23]])
_COLOR_JITTER = 20  # per channel, in 0-255 units


def _check_names(values, known, what):
    if values is None:
        return tuple(known)
    if isinstance(values, str):
        values = [values]
    values = list(dict.fromkeys(values))  # drop duplicates, keep order
    if not values:
        raise ValueError(f"{what} must name at least one entry, got an empty list.")
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(
            f"Unknown {what} {unknown!r}; expected names among {list(known)!r}."
        )
    return tuple(values)


def _check_pairs(pairs, param):
    if pairs is None:
        return None
    checked = set()
    for pair in pairs:
        if isinstance(pair, str) or np.ndim(pair) != 1 or len(pair) != 2:
            raise ValueError(
                f"Each entry of {param} must be a (color, shape) pair, got {pair!r}."
            )
        _check_names(pair[:1], COLORS, f"color in {param}")
        _check_names(pair[1:], SHAPES, f"shape in {param}")
        checked.add(tuple(pair))
    return checked


def _caption(template, color, shape, size, position):
    text = template.format(color=color, shape=shape, size=size, where=_WHERE[position])
    return re.sub(r"\ba(?= [aeiou])", "an", text)  # "a orange" -> "an orange"


def make_shapes(
    n_samples=1000,
    *,
    image_size=64,
    colors=None,
    shapes=None,
    holdout_combinations=None,
    only_combinations=None,
    noise=0.05,
    as_frame=False,
    return_X_y=False,
    random_state=None,
):
    """Generate captioned images of one coloured shape on a noisy background.

    Each image shows a single shape (see ``SHAPES``) of one color (see ``COLORS``,
    with a small per-sample jitter), of size ``"small"`` or ``"large"``, centred on
    the left, right, top, bottom or center of the image, over a dark or light grey
    background with gaussian noise. Each image comes with a natural-language caption
    drawn from ``TEMPLATES``, such as ``"a small red circle"`` or ``"something green
    on the right"``. Every caption names the color or the shape, most name both.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of images.

    image_size : int, default=64
        Side of the square images, in pixels; at least 16.

    colors : list of str, default=None
        Colors to draw from, among the keys of ``COLORS``. None means all.

    shapes : list of str, default=None
        Shapes to draw from, among ``SHAPES``. None means all.

    holdout_combinations : iterable of (str, str), default=None
        ``(color, shape)`` pairs that never appear in the generated data, e.g. to
        hold them out of training.

    only_combinations : iterable of (str, str), default=None
        If given, generate only these ``(color, shape)`` pairs, e.g. to build the
        test set of held-out pairs.

    noise : float, default=0.05
        Standard deviation of the gaussian pixel noise, in units of the full
        intensity range (1.0 = 255).

    as_frame : bool, default=False
        If True, also return the data as a pandas DataFrame in ``frame``.

    return_X_y : bool, default=False
        If True, return ``(images, captions)`` instead of a Bunch; with
        ``as_frame=True``, the ``image`` and ``caption`` columns as Series.

    random_state : int, RandomState instance or None, default=None
        Seed for reproducible output across calls.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with attributes:

        images : ndarray of shape (n_samples, image_size, image_size, 3), uint8
            The RGB images.
        captions : ndarray of shape (n_samples,), dtype object
            One caption per image.
        color, shape, size, position : ndarray of shape (n_samples,), dtype object
            The labels of each image.
        color_names, shape_names : list of str
            The colors and shapes drawn from (before any holdout).
        frame : DataFrame or None
            Columns ``image`` (one HWC array per row), ``caption``, ``color``,
            ``shape``, ``size`` and ``position``; None unless ``as_frame=True``.
        DESCR : str
            Description of the dataset.

    (images, captions) : tuple
        If ``return_X_y`` is True.

    Examples
    --------
    >>> from sklearn_clip.datasets import make_shapes
    >>> data = make_shapes(n_samples=10, image_size=32, random_state=0)
    >>> data.images.shape, data.images.dtype
    ((10, 32, 32, 3), dtype('uint8'))
    >>> data.captions.shape
    (10,)
    >>> X, y = make_shapes(
    ...     n_samples=5, holdout_combinations=[("red", "circle")], return_X_y=True
    ... )
    >>> X.shape, y.shape
    ((5, 64, 64, 3), (5,))
    """
    pairs = _combinations(
        n_samples, image_size, noise, colors, shapes, holdout_combinations,
        only_combinations,
    )  # fmt: skip
    # A Generator draws the many noise integers faster than a RandomState; seeding it
    # from check_random_state keeps sklearn's random_state semantics.
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    rng = np.random.default_rng(seed)
    scenes = _draw_scenes(rng, pairs, int(n_samples), int(image_size))
    images = render(rng, scenes, int(image_size), noise)
    captions = np.array(
        [
            _caption(TEMPLATES[t], c, s, z, p)
            for t, c, s, z, p in zip(
                scenes["template"], scenes["color"], scenes["shape"],
                scenes["size"], scenes["position"],
            )
        ],
        dtype=object,
    )  # fmt: skip
    labels = {k: scenes[k] for k in ("color", "shape", "size", "position")}
    frame = None
    if as_frame:
        import pandas as pd  # optional at import time, like sklearn's loaders

        images_col = pd.Series(list(images), dtype=object)
        frame = pd.DataFrame({"image": images_col, "caption": captions, **labels})
    if return_X_y:
        return (frame["image"], frame["caption"]) if as_frame else (images, captions)
    return Bunch(
        images=images,
        captions=captions,
        **labels,
        frame=frame,
        color_names=list(_check_names(colors, COLORS, "colors")),
        shape_names=list(_check_names(shapes, SHAPES, "shapes")),
        DESCR=_DESCR,
    )


def _combinations(n_samples, image_size, noise, colors, shapes, holdout, only):
    """The (color, shape) pairs to draw from, after checking every parameter."""
    for name, value, low in [
        ("n_samples", n_samples, 1),
        ("image_size", image_size, 16),
    ]:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} must be an integer, got {value!r}.")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}.")
    if not isinstance(noise, numbers.Real) or not 0 <= noise < np.inf:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}.")
    colors = _check_names(colors, COLORS, "colors")
    shapes = _check_names(shapes, SHAPES, "shapes")
    holdout = _check_pairs(holdout, "holdout_combinations") or set()
    only = _check_pairs(only, "only_combinations")
    pairs = [
        (c, s)
        for c, s in product(colors, shapes)
        if (only is None or (c, s) in only) and (c, s) not in holdout
    ]
    if not pairs:
        raise ValueError(
            "No (color, shape) combination is left to generate: check colors, "
            "shapes, holdout_combinations and only_combinations."
        )
    return pairs


def _draw_scenes(rng, pairs, n, side):
    """What each image shows: its shape, colours, size, place and caption form."""
    pair_idx = rng.integers(len(pairs), size=n)
    color_idx = np.array([list(COLORS).index(c) for c, _ in pairs])[pair_idx]
    size_idx = rng.integers(len(SIZES), size=n)
    pos_idx = rng.integers(len(POSITIONS), size=n)
    lo, hi = _RADII[size_idx].T
    radius = side * rng.uniform(lo, hi)
    center = side * (_ANCHORS[pos_idx] + rng.uniform(-0.05, 0.05, size=(n, 2)))
    palette = np.array(list(COLORS.values()), dtype=np.float32)
    rgb = palette[color_idx] + rng.uniform(-_COLOR_JITTER, _COLOR_JITTER, (n, 3))
    dark = rng.random(n) < 0.5
    base = np.where(dark, rng.uniform(25, 90, n), rng.uniform(165, 230, n))
    return {
        "color": np.array(list(COLORS), dtype=object)[color_idx],
        "shape": np.array([s for _, s in pairs], dtype=object)[pair_idx],
        "size": np.array(SIZES, dtype=object)[size_idx],
        "position": np.array(POSITIONS, dtype=object)[pos_idx],
        "radius": radius,
        "center": center,
        "rgb": rgb,
        "base": base,
        "template": rng.integers(len(TEMPLATES), size=n),
    }


def make_photo(width=640, height=480, *, edges=False, random_state=None):
    """A photo-like RGB image, for benchmarks and tests of image decoding.

    Smooth gradients, soft blobs and sensor noise compress like a photograph
    (about 55 kB at 640x480 as a quality-90 JPEG); ``edges`` adds a fine
    checkerboard, the worst case for downscaling.

    Parameters
    ----------
    width, height : int, default=640, 480
        Size in pixels; blobs and gradients scale with the width.
    edges : bool, default=False
        Add a checkerboard of high-frequency detail.
    random_state : int, sequence of int, numpy Generator or None, default=None
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    ndarray of shape (height, width, 3) and dtype uint8
        The image.

    Examples
    --------
    >>> from sklearn_clip.datasets import make_photo
    >>> make_photo(64, 48, random_state=0).shape
    (48, 64, 3)
    """
    rng = np.random.default_rng(random_state)
    x = np.arange(width, dtype=np.float32)[None, :, None]
    y = np.arange(height, dtype=np.float32)[:, None, None]
    scale = width / 640
    image = (
        rng.uniform(0, 255, 3)
        + (rng.uniform(-0.3, 0.3, 3) * x + rng.uniform(-0.3, 0.3, 3) * y) / scale
    )
    for _ in range(6):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(20, 150) * scale
        # A Gaussian blob is the outer product of two 1-D ones.
        blob = np.exp(-((x - cx) ** 2) / (2 * radius**2)) * np.exp(
            -((y - cy) ** 2) / (2 * radius**2)
        )
        image = image + blob * rng.uniform(-120, 120, 3)
    if edges:
        period = max(2, int(6 * scale))
        image = image + ((x // period + y // period) % 2) * 60 - 30
    image = image + rng.normal(0, 6, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


_DESCR = """\
Synthetic shapes dataset
------------------------

Each sample is an RGB image of one colored shape (circle, square, triangle, cross
or diamond; red, green, blue, yellow, purple or orange with a small jitter), small
or large, centred on the left, right, top, bottom or center of the image, on a dark
or light grey background with gaussian noise, paired with a caption drawn at random
from several templates. Use ``holdout_combinations`` and ``only_combinations`` to
test compositional generalisation to (color, shape) pairs unseen in training.
"""
