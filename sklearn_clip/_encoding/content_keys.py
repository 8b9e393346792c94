"""What an input is, for the embedding cache: a hash of its content.

A file is keyed by its bytes (not its path), encoded bytes by themselves, an
array by its dtype, shape and buffer, a PIL image by its RGB pixels, a text by
its UTF-8, a video frame by its clip's bytes and its time. A file is read
once: the bytes hashed for its key are the bytes decoded and embedded, so a
file replaced meanwhile cannot store one image's embedding under another's
key.
"""

import hashlib
import os

import numpy as np
from PIL import Image

from sklearn_clip._encoding.images import ROW_ERRORS, read_image_file, to_rgb
from sklearn_clip._encoding.video import VideoFrame


def _digest(kind, *parts):
    digest = hashlib.sha256(kind)
    for part in parts:
        digest.update(part)
    return digest.hexdigest()[:32]


def content_key(item, kind):
    """The hex key of one input's content, or None when it has none to hash."""
    return keyed_row(item, kind)[0]


def keyed_row(item, kind):
    """``(key, row)``: one input's content key, and what to encode for it.

    A file is read once (a regular file only, and a bounded number of bytes;
    see :func:`~sklearn_clip._encoding.images.read_image_file`): the key is the hash of
    the bytes read, and the row to encode is those same bytes, so a file that
    changes after it was read can never store one image's embedding under
    another's key. Other rows are keyed by their content and encoded as they
    are. Rows without a key (a missing or special file, None, an unsupported
    type) are never cached: they go to the encoder, which reports them.
    """
    if kind == "text":
        if not isinstance(item, str):
            return None, item
        return _digest(b"text\0", item.encode("utf-8", "surrogatepass")), item
    if isinstance(item, VideoFrame):
        # The clip's content and the frame's time: the frame is a pure
        # function of both, and the clip is hashed once for all its frames.
        try:
            clip = item.source.digest()
        except OSError:
            return None, item
        return _digest(b"frame\0", clip.encode(), repr(item.time).encode()), item
    if isinstance(item, str | os.PathLike):
        try:
            data = read_image_file(item)
        except ROW_ERRORS:
            return None, item
        return _digest(b"bytes\0", data), data
    if isinstance(item, bytes | bytearray):
        return _digest(b"bytes\0", item), item
    if isinstance(item, np.ndarray):
        if item.dtype.kind not in "biuf":
            return None, item
        header = f"{item.dtype.str}:{item.shape}".encode()
        return _digest(b"array\0", header, np.ascontiguousarray(item).data), item
    if isinstance(item, Image.Image):
        # The RGB pixels are what the model sees of a PIL image, whatever its
        # mode, palette, transparency or orientation tag.
        try:
            rgb = to_rgb(item)
        except ROW_ERRORS:
            return None, item
        return _digest(b"pil\0", f"{rgb.size}".encode(), rgb.tobytes()), item
    return None, item
