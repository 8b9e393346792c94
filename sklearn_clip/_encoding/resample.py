"""Antialiased resizing in NumPy, equal to PyTorch's ``uint8`` kernel.

Where PyTorch is installed, images are resized by its antialiased ``uint8``
interpolation (:mod:`sklearn_clip._encoding.preprocess`). A deployment without
PyTorch (the ONNX Runtime and OpenVINO backends) resizes here instead, with
the same arithmetic: the same filter taps (Pillow's bicubic, ``a = -0.5``, and
triangle filters, widened by the scale when shrinking), the same weights
rounded to 16-bit integers at the same precision, a horizontal then a
vertical pass, each rounded to ``uint8``. ``tests/backends/test_export.py`` checks the
results equal PyTorch's bit for bit on a few hundred random sizes.

Each pass is one sparse matrix product in float64, exact for these integer
sums (they stay far below 2**53).
"""

import functools

import numpy as np
from scipy import sparse

# The filters' half-widths ("support") at scale 1, by PyTorch's mode name.
_SUPPORT = {"bicubic": 2.0, "bilinear": 1.0}
# The most fractional bits a 16-bit weight keeps, as PyTorch bounds them.
_MAX_PRECISION = 22


def _bicubic(x):
    a = -0.5  # Pillow's (and PyTorch's antialiased) bicubic coefficient
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _bilinear(x):
    return np.maximum(1.0 - np.abs(x), 0.0)


_FILTERS = {"bicubic": _bicubic, "bilinear": _bilinear}


@functools.lru_cache(maxsize=64)
def _pass_matrix(in_size, out_size, mode):
    """``(matrix, precision)``: the integer weights of one pass, and their scale."""
    scale = in_size / out_size
    widen = max(scale, 1.0)  # shrinking widens the filter: that is the antialias
    support = _SUPPORT[mode] * widen
    taps = int(np.ceil(support)) * 2 + 1
    centers = scale * (np.arange(out_size) + 0.5)
    first = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    last = np.minimum((centers + support + 0.5).astype(np.int64), in_size)
    count = np.clip(last - first, 0, taps)
    offsets = np.arange(taps)
    weights = _FILTERS[mode](
        (offsets + first[:, None] - centers[:, None] + 0.5) / widen
    )
    weights = np.where(offsets < count[:, None], weights, 0.0)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.divide(weights, total, out=np.zeros_like(weights), where=total != 0)
    precision = _precision(weights.max())
    scaled = weights * (1 << precision)
    integer = np.trunc(np.where(scaled < 0, scaled - 0.5, scaled + 0.5))
    columns = np.minimum(first[:, None] + offsets, in_size - 1)
    rows = np.repeat(np.arange(out_size), taps)
    matrix = sparse.csr_matrix(
        (integer.ravel(), (rows, columns.ravel())), shape=(out_size, in_size)
    )
    return matrix, precision


def _precision(largest_weight):
    """The most fractional bits with which the largest weight fits in int16."""
    precision = 0
    while precision < _MAX_PRECISION:
        if int(0.5 + largest_weight * (1 << (precision + 1))) >= 1 << 15:
            break
        precision += 1
    return precision


def _resize_axis(array, axis, out_size, mode):
    matrix, precision = _pass_matrix(array.shape[axis], out_size, mode)
    moved = np.moveaxis(array, axis, 0)
    total = matrix @ moved.reshape(moved.shape[0], -1).astype(np.float64)
    total += 1 << (precision - 1)  # rounds, as the integer kernel does
    pixels = np.clip(np.floor(total / (1 << precision)), 0, 255).astype(np.uint8)
    return np.moveaxis(pixels.reshape((out_size, *moved.shape[1:])), 0, axis)


def resize_uint8(array, height, width, mode="bicubic"):
    """Resize an HWC ``uint8`` array as PyTorch's antialiased interpolation does.

    Parameters
    ----------
    array : ndarray of shape (H, W, C), dtype uint8
        The image.
    height, width : int
        The new size.
    mode : {"bicubic", "bilinear"}, default="bicubic"
        The filter.

    Returns
    -------
    ndarray of shape (height, width, C), dtype uint8

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip._encoding.resample import resize_uint8
    >>> resize_uint8(np.full((40, 60, 3), 200, np.uint8), 20, 30).shape
    (20, 30, 3)
    """
    if array.shape[1] != width:
        array = _resize_axis(array, 1, width, mode)
    if array.shape[0] != height:
        array = _resize_axis(array, 0, height, mode)
    return np.ascontiguousarray(array)
