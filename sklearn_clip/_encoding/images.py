"""Any supported image input -> an RGB image -> what the model's pixels are made of.

Each row is brought to one canonical form (an RGB ``PIL.Image``) on its own: no
heuristic is shared across a batch, so one odd image cannot change how its
neighbours are read. Files are size-checked before they are read, and only
the formats a photo or a scan comes in are decoded. The pixel arithmetic after
that is :mod:`~sklearn_clip._encoding.preprocess`'s.
"""

import io
import math
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sklearn_clip._encoding.inputs import is_missing
from sklearn_clip._encoding.preprocess import (
    ProcessorImages,
    resize_and_crop,
)
from sklearn_clip._torch import is_tensor

# ImageInputError stays importable from here, where it was defined, for old
# imports and pickles; the modules that raise it import it from exceptions.
from sklearn_clip.exceptions import (  # noqa: F401
    ImageInputError,
    UnsupportedImageError,
)

# Formats a photo or a scan comes in. Restricting the plugins Pillow may try
# keeps rarely used (and historically vulnerable) decoders out of reach. MPO
# (multi-picture JPEG) files open through the JPEG plugin; every name here must
# be one Pillow registers, or Pillow fails with a KeyError on unreadable files.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM")

# Pillow's own list of what a malformed file can raise while decoding.
DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    NotImplementedError,
    OverflowError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
    EOFError,
)


# Everything reading one bad row can raise. Anything else (MemoryError,
# KeyboardInterrupt, a TypeError from a bug) is not the row's fault and
# propagates, whatever the error policy.
ROW_ERRORS = (*DECODE_ERRORS, UnsupportedImageError)

# The largest file read as an image. An image within Pillow's pixel limit
# (about 89 megapixels) takes at most about 716 MB even uncompressed at 8 bytes
# a pixel; a larger file is refused before it is read, so no input can fill
# the memory.
MAX_FILE_BYTES = 1 << 30


class FileBytes(bytes):
    """The bytes of an image file, read once, and the path they came from.

    Passed on in place of the path, so that the bytes a cache key is computed
    from are the bytes that are decoded, while errors still name the path.
    """

    def __new__(cls, data, path=None):
        self = super().__new__(cls, data)
        self.path = path
        return self


def read_image_file(path, limit=None):
    """The bytes of a regular file, as :class:`FileBytes`.

    At most ``limit`` bytes (default :data:`MAX_FILE_BYTES`) are read; a
    larger file is refused.

    Whether the path is a regular file is checked before anything is read
    (reading a FIFO waits for a writer forever; ``/dev/zero`` never ends), and
    again on the opened file, which is opened without blocking, so a path
    swapped for a FIFO in between cannot hang either. Raises ``OSError``
    subclasses naming the path.
    """
    limit = MAX_FILE_BYTES if limit is None else limit
    try:
        _check_regular(os.stat(path).st_mode, path)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {str(path)!r}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        _check_regular(info.st_mode, path)
        if info.st_size > limit:
            raise OSError(
                f"the file has {info.st_size} bytes, more than the {limit} read "
                f"as an image: {str(path)!r}"
            )
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"the file grew past {limit} bytes while read: {str(path)!r}")
    if not data:
        raise OSError("the file is empty")
    return FileBytes(data, path)


def _check_regular(mode, path):
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"not a regular file (a directory): {str(path)!r}")
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device, socket or other special file"
    raise OSError(f"not a regular file ({kind}): {str(path)!r}")


def describe_source(item):
    """A short description of an input for error messages."""
    if isinstance(item, dict) and item.get("path") is not None:
        return f"path {str(item['path'])!r}"
    if isinstance(item, dict):
        return "a datasets image dict"
    if is_tensor(item):
        return f"tensor of shape {tuple(item.shape)} and dtype {item.dtype}"
    if is_missing(item):
        return f"a missing value ({item!r})"
    if isinstance(item, str | Path):
        return f"path {str(item)!r}"
    if isinstance(item, FileBytes):
        return f"path {str(item.path)!r}"
    if isinstance(item, bytes | bytearray):
        return f"{len(item)} bytes"
    if isinstance(item, np.ndarray):
        return f"array of shape {item.shape} and dtype {item.dtype}"
    if isinstance(item, Image.Image):
        return f"PIL image of mode {item.mode} and size {item.size}"
    return f"object of type {type(item).__name__}"


def _open_image(item, draft_for=None):
    """Decode a path or bytes fully, so no file handle outlives this call.

    With an :class:`ImageConfig` as ``draft_for``, a large JPEG is decoded at a
    reduced scale that its ``draft_factor`` allows.
    """
    if isinstance(item, str | Path):
        data = read_image_file(item)
    else:
        data = item if isinstance(item, bytes) else bytes(item)
    try:
        opened = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        # PIL's message names the in-memory buffer by its address, which says
        # nothing to the reader; the row and the path are named by the caller.
        formats = ", ".join(ALLOWED_FORMATS)
        raise UnidentifiedImageError(
            f"cannot identify image file: not {formats} data"
        ) from None
    with opened as image:
        _check_pixel_count(image)
        if draft_for is not None:
            _draft(image, draft_for)
        image.load()
        return ImageOps.exif_transpose(image)


def _draft(image, config):
    # libjpeg scales by 1/2, 1/4 or 1/8 while decoding (DCT scaling), keeping
    # the image at least as large as asked: ask for draft_factor times the
    # resized size, so the bicubic resize that follows still low-passes it.
    if config.draft_factor is None or config.size is None:
        return
    if image.format not in ("JPEG", "MPO"):
        return
    # Measured on the short sides, so an EXIF rotation applied later (the
    # stored image may be transposed) cannot make either side too small.
    target = config.size if isinstance(config.size, int) else max(config.size)
    reduction = min(image.size) / (config.draft_factor * target)
    if reduction >= 2:
        width, height = image.size
        image.draft(None, (math.ceil(width / reduction), math.ceil(height / reduction)))


def _check_pixel_count(image):
    # Pillow only warns between 1x and 2x its limit; for a batch job that is an
    # error like any other bomb, without touching Pillow's process-wide state.
    limit = Image.MAX_IMAGE_PIXELS
    if limit and image.width * image.height > limit:
        raise Image.DecompressionBombError(
            f"image of {image.width}x{image.height} pixels exceeds Pillow's limit "
            f"of {limit} pixels (PIL.Image.MAX_IMAGE_PIXELS)"
        )


def _array_to_image(array):
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(
            "an image array must be (H, W) greyscale or (H, W, 3|4) channels-last; "
            f"got shape {array.shape}"
        )
    if min(array.shape[:2]) == 0:
        raise ValueError(f"an image array must not be empty; got shape {array.shape}")
    if array.dtype == np.uint8:
        pass
    elif array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise ValueError("a float image array must not contain NaN or inf")
        if array.min() < 0 or array.max() > 1:
            raise ValueError(
                "a float image array must hold values in [0, 1]; got values in "
                f"[{array.min():.3g}, {array.max():.3g}] (pass uint8 for 0-255 data)"
            )
        array = np.round(array * 255).astype(np.uint8)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    else:
        raise ValueError(
            f"image arrays must be uint8, bool or float in [0, 1]; got {array.dtype}"
        )
    return Image.fromarray(np.ascontiguousarray(array))


def _to_rgb_mode(image):
    """Convert any Pillow mode to RGB, compositing transparency on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # Pillow clamps rather than rescales 16/32-bit greyscale to 8 bits, so a
        # 16-bit image would come out nearly white; scale the range explicitly.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 or image.mode != "I" else 255.0
        values = np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(values).convert("RGB")
    if image.mode == "F":
        return _array_to_image(np.asarray(image)).convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        # Pillow converts premultiplied "La" only to "LA", not to "RGBA".
        rgba = (image.convert("LA") if image.mode == "La" else image).convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _datasets_image(item):
    """The encoded bytes of a datasets image dict, else its path.

    The ``"bytes"`` slot holds the file's bytes: anything else there (a path
    string, say) is refused rather than read as something it is not.
    """
    data = item.get("bytes")
    if data is not None:
        if isinstance(data, memoryview):
            data = data.tobytes()
        if not isinstance(data, bytes | bytearray):
            raise UnsupportedImageError(
                "the 'bytes' slot of a datasets image dict must hold the encoded "
                f"file's bytes; found {type(data).__name__} {_short(data)}. Put "
                "a file's path in the 'path' slot instead."
            )
        return data
    path = item.get("path")
    if path is None:
        raise UnsupportedImageError(
            f"the image dict holds neither bytes nor a path: {_short(item)}"
        )
    if not isinstance(path, str | os.PathLike):
        raise UnsupportedImageError(
            "the 'path' slot of a datasets image dict must hold a file path; "
            f"found {type(path).__name__} {_short(path)}"
        )
    return path


def _short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _plain_image_input(item):
    """A datasets dict -> its bytes (else its path); a tensor -> an HWC array."""
    if isinstance(item, dict) and set(item) <= {"bytes", "path"}:
        return _datasets_image(item)
    if is_tensor(item):
        array = item.detach().cpu().numpy()
        channels_first = array.ndim == 3 and array.shape[0] in (1, 3, 4)
        if channels_first and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)
        return array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
    return item


def to_rgb(item):
    """Turn one supported image input into an RGB ``PIL.Image``.

    Accepts a path (``str`` or ``pathlib.Path``), encoded ``bytes``, a
    ``PIL.Image.Image``, a numpy array (HWC ``uint8``, HW greyscale, or float
    in [0, 1]), a torch tensor (the same, or CHW as torchvision writes it) and
    a Hugging Face ``datasets`` image value that was not decoded (a dict with
    ``"bytes"`` and ``"path"``). EXIF orientation is applied; transparency is
    composited on white; palette, greyscale, 1-bit, CMYK and 16-bit images
    are converted; of an animated or multi-page file the first frame is used.

    Raises one of :data:`ROW_ERRORS`: a missing value or an unsupported type
    raises :class:`UnsupportedImageError` (a ``TypeError``), an unreadable file
    or array one of Pillow's decoding errors (``OSError``, ``ValueError``, ...).
    """
    item = _plain_image_input(item)
    if isinstance(item, str | Path | bytes | bytearray):
        image = _open_image(item)
    elif isinstance(item, Image.Image):
        _check_pixel_count(item)
        image = ImageOps.exif_transpose(item)
    elif isinstance(item, np.ndarray):
        image = _array_to_image(item)
    elif is_missing(item):
        raise UnsupportedImageError(
            f"the image is missing ({item!r}); fill or drop missing rows first"
        )
    else:
        raise UnsupportedImageError(
            "an image must be a path, bytes, a PIL image, a numpy array, a torch "
            'tensor or a {"bytes", "path"} dict (Hugging Face datasets); got '
            f"{type(item).__name__}"
        )
    if image.width == 0 or image.height == 0:
        raise ValueError(f"the image has no pixels (size {image.size})")
    return _to_rgb_mode(image)


def prepare_image(item, config):
    """One input -> what the model's pixels are made from.

    An HWC ``uint8`` array under an :class:`ImageConfig`, a record of the
    processor's outputs under :class:`ProcessorImages`.
    """
    if isinstance(config, ProcessorImages):
        return config.prepare(to_rgb(item))
    item = _plain_image_input(item)
    if isinstance(item, str | Path | bytes | bytearray):
        # Decoded here rather than in to_rgb, so a large JPEG can be drafted.
        item = _open_image(item, draft_for=config)
    return resize_and_crop(to_rgb(item), config)
