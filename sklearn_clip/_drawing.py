"""Drawing the images of :func:`sklearn_clip.datasets.make_shapes`.

One coloured shape on a noisy background per image, drawn a chunk of images at
a time with numpy so memory stays bounded whatever the number of images.
"""

import numpy as np
from scipy.special import ndtri

# Standard normal quantiles at the centres of 2**16 equal-probability bins.
_NORMAL_QUANTILES = ndtri((np.arange(2**16) + 0.5) / 2**16).astype(np.float32)
_CHUNK_PIXELS = 2**21  # pixels per drawing batch, bounds the working memory


def render(rng, scenes, side, noise):
    """Draw the scenes, a chunk of images at a time, into ``uint8`` HWC arrays."""
    n = len(scenes["shape"])
    # Gaussian noise by inverse-CDF lookup of 16-bit random integers: about 4 times
    # faster than standard_normal, and the same once the pixels are rounded to uint8.
    noise_table = (np.float32(255 * noise) * _NORMAL_QUANTILES).astype(np.float32)
    images = np.empty((n, side, side, 3), dtype=np.uint8)
    chunk = max(1, _CHUNK_PIXELS // side**2)
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        mask = _masks({k: scenes[k][rows] for k in ("shape", "radius", "center")}, side)
        # Channels-first, so that per-sample broadcasts run over contiguous rows.
        base, rgb = scenes["base"][rows], scenes["rgb"][rows]
        fill = np.empty((len(mask), 3, side, side), dtype=np.float32)
        fill[...] = base[:, None, None, None]
        if noise > 0:
            fill += noise_table[rng.integers(0, 2**16, fill.shape, dtype=np.uint16)]
        diff = (rgb - base[:, None]).astype(np.float32)
        fill += mask[:, None] * diff[:, :, None, None]
        fill += 0.5  # so that the truncating cast below rounds
        np.clip(fill, 0, 255, out=fill)
        images[rows] = fill.transpose(0, 2, 3, 1)
    return images


def _masks(scenes, side):
    """Boolean ``(n, side, side)`` masks of each scene's shape."""
    # Pixel centres, shared by every shape.
    grid = np.arange(side, dtype=np.float32) + 0.5
    mask = np.empty((len(scenes["shape"]), side, side), dtype=bool)
    for name in np.unique(scenes["shape"]):
        rows = np.flatnonzero(scenes["shape"] == name)
        r = scenes["radius"][rows].astype(np.float32)[:, None, None]
        cx, cy = scenes["center"][rows].astype(np.float32).T
        u = (grid[None, None, :] - cx[:, None, None]) / r
        v = (grid[None, :, None] - cy[:, None, None]) / r
        mask[rows] = _shape_mask(name, u, v)
    return mask


def _shape_mask(shape, u, v):
    """Boolean mask of ``shape`` for coordinates normalised by the shape radius.

    ``u`` and ``v`` broadcast against each other (one is a row, one a column), so the
    full-size arrays are only created by the final comparisons.
    """
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        # Smaller half-width than the circle radius so the areas are comparable.
        return (au <= 0.8) & (av <= 0.8)
    if shape == "diamond":
        return au + av <= 1.15
    if shape == "cross":
        return ((au <= 1.0) & (av <= 0.3)) | ((av <= 1.0) & (au <= 0.3))
    # triangle: apex up at v = -1, flat base at v = 0.75 (image y points down).
    return (v <= 0.75) & (au <= (v + 1.0) / 1.75)
