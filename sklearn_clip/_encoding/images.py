"""Any supported image input -> RGB -> the model's pixel tensors.

Each row is brought to one canonical form (an RGB ``PIL.Image``) on its own: no
heuristic is shared across a batch, so one odd image cannot change how its
neighbours are read.

The checkpoint's image processor (resolved by transformers) decides the
preprocessing. For the processors whose steps are proven equal here (CLIP's
and SigLIP's: resize, centre crop, rescale, normalise; see
``tests/test_images.py``) an :class:`ImageConfig` takes those settings and
runs them faster: bicubic and bilinear resizes through PyTorch's antialiased
``uint8`` interpolation, the kernel that transformers' default (torchvision)
image processors use, four times faster than Pillow's on one core and within
one grey level of the Pillow processors, and rescaling and normalisation once
per batch as tensor arithmetic. Every other processor runs itself, row by row
in the decoding threads (:class:`ProcessorImages`), so whatever inputs its
model takes (SigLIP 2's patch masks and shapes, for one) come with it.
"""

import io
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

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

_OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# Everything reading one bad row can raise. Anything else (MemoryError,
# KeyboardInterrupt, a TypeError from a bug) is not the row's fault and
# propagates, whatever the error policy.
ROW_ERRORS = (*DECODE_ERRORS, UnsupportedImageError)

# Resizing the shortest edge first makes an intermediate image that grows with
# the aspect ratio (a 1 x 100,000 strip becomes 3,000,000 x 30 pixels for a
# 30-pixel model). Beyond this many times the crop area only the part that
# survives the centre crop is resampled, so memory stays bounded.
_RESIZE_HEADROOM = 16

# Pillow filters that PyTorch computes with the same antialiased kernel.
_TORCH_RESIZE_MODES = {
    Image.Resampling.BICUBIC: "bicubic",
    Image.Resampling.BILINEAR: "bilinear",
}


@dataclass(frozen=True)
class ImageConfig:
    """The preprocessing of a CLIP or SigLIP image processor, run fast.

    Parameters
    ----------
    size : int or tuple of (int, int)
        An int resizes the shortest edge to it, keeping the aspect ratio; a
        ``(height, width)`` pair resizes to exactly that.
    crop : tuple of (int, int) or None
        Centre crop ``(height, width)`` after resizing, or None for no crop.
    resample : int
        Pillow resampling filter.
    rescale_factor, mean, std : float, tuple, tuple
        ``pixel = (value * rescale_factor - mean) / std``.
    draft_factor : float or None
        A JPEG whose short side is at least ``2 * draft_factor`` times the
        target size is decoded at 1/2, 1/4 or 1/8 scale by libjpeg (Pillow's
        ``Image.draft``), never below ``draft_factor`` times the target, before
        the usual resize: several times faster for camera-sized photos. At the
        default of 2 the pixels differ from a full decode by a few grey levels
        at most and embeddings by a cosine of less than 1e-5 (measured on
        ViT-B/32); smaller JPEGs, such as 640x480 for a 224 model, are decoded
        fully. None always decodes fully, as the reference processors do.
    """

    size: int | tuple[int, int] = 224
    crop: tuple[int, int] | None = (224, 224)
    resample: int = Image.Resampling.BICUBIC
    rescale_factor: float = 1 / 255
    mean: tuple[float, float, float] = _OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = _OPENAI_CLIP_STD
    draft_factor: float | None = 2.0

    @property
    def output_size(self):
        """The ``(height, width)`` of the pixel tensors."""
        if self.crop is not None:
            return self.crop
        if isinstance(self.size, tuple):
            return self.size
        raise ValueError("A shortest-edge resize without a crop has no fixed size.")


# Image processors whose steps ImageConfig reproduces (proven against each in
# tests/test_images.py), by class name: the Pillow and torchvision variants.
FAST_PROCESSORS = (
    "CLIPImageProcessor",
    "CLIPImageProcessorPil",
    "SiglipImageProcessor",
    "SiglipImageProcessorPil",
)
# The settings those processors have; any other switched on (a pad, a
# different rescale) leaves the processor to run itself.
_KNOWN_SETTINGS = {
    "do_resize",
    "size",
    "resample",
    "do_center_crop",
    "crop_size",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
    "do_convert_rgb",
    "image_processor_type",
    "processor_class",
}


def image_preprocessing(processor):
    """The fast :class:`ImageConfig` of a processor where one is proven, else
    :class:`ProcessorImages` running the processor itself."""
    if type(processor).__name__ in FAST_PROCESSORS:
        config = _fast_config(processor.to_dict())
        if config is not None:
            return config
    config = ProcessorImages(processor)
    try:  # a setting the processor cannot run fails here, not on every row
        config.prepare(Image.new("RGB", (17, 11)))
    except Exception as exc:
        raise ValueError(
            f"the checkpoint's image processor ({type(processor).__name__}) cannot "
            f"preprocess an image with its settings: {type(exc).__name__}: {exc}"
        ) from exc
    return config


def _size(size):
    """``(height, width)``, an int (shortest edge), or None for other forms."""
    size = {k: v for k, v in dict(size).items() if v is not None}
    if set(size) == {"shortest_edge"}:
        return int(size["shortest_edge"])
    if set(size) == {"height", "width"}:
        return int(size["height"]), int(size["width"])
    return None


def _fast_config(settings):
    switched_on = {k for k, v in settings.items() if v not in (None, False)}
    if not switched_on <= _KNOWN_SETTINGS:
        return None
    size = _size(settings["size"]) if settings.get("do_resize") else None
    crop = None
    if settings.get("do_center_crop"):
        crop = _size(settings.get("crop_size") or {})
        if not isinstance(crop, tuple):
            return None
    if settings.get("do_resize") and size is None:
        return None  # longest_edge and other forms: the processor itself
    if crop is None and not isinstance(size, tuple):
        return None  # no fixed output size
    rescale = settings.get("rescale_factor") if settings.get("do_rescale") else 1.0
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if settings.get("do_normalize"):
        mean, std = tuple(settings["image_mean"]), tuple(settings["image_std"])
    return ImageConfig(
        size=size,
        crop=crop,
        resample=int(settings.get("resample", Image.Resampling.BICUBIC)),
        rescale_factor=float(rescale),
        mean=mean,
        std=std,
    )


@dataclass(frozen=True)
class ProcessorImages:
    """Preprocessing by the checkpoint's own image processor, one row at a time.

    Each row becomes a record (a 0-d structured numpy array) of what the
    processor returns for it (``pixel_values``, and for SigLIP 2
    ``pixel_attention_mask`` and ``spatial_shapes``); a batch of records
    stacks into the model's keyword arguments.
    """

    processor: object = field(compare=False)

    def prepare(self, image):
        out = self.processor(images=[image], return_tensors="np")
        arrays = {key: np.asarray(value)[0] for key, value in out.items()}
        dtype = np.dtype([(k, v.dtype, v.shape) for k, v in arrays.items()])
        record = np.empty((), dtype)
        for key, value in arrays.items():
            record[key] = value
        return record

    def collate(self, records, device, dtype):
        batch = np.stack(records) if isinstance(records, list) else records
        inputs = {}
        for key in batch.dtype.names:
            tensor = torch.from_numpy(np.ascontiguousarray(batch[key])).to(device)
            inputs[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
        return inputs


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


def _is_missing(item):
    if item is None or item is pd.NA or item is pd.NaT:
        return True
    return isinstance(item, float | np.floating) and bool(np.isnan(item))


def describe_source(item):
    """A short description of an input for error messages."""
    if _is_missing(item):
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


def to_rgb(item):
    """Turn one supported image input into an RGB ``PIL.Image``.

    Accepts a path (``str`` or ``pathlib.Path``), encoded ``bytes``, a
    ``PIL.Image.Image`` or a numpy array (HWC ``uint8``, HW greyscale, or float
    in [0, 1]). EXIF orientation is applied; transparency is composited on
    white; palette, greyscale, 1-bit, CMYK and 16-bit images are converted;
    of an animated or multi-page file the first frame is used.

    Raises one of :data:`ROW_ERRORS`: a missing value or an unsupported type
    raises :class:`UnsupportedImageError` (a ``TypeError``), an unreadable file
    or array one of Pillow's decoding errors (``OSError``, ``ValueError``, ...).
    """
    if isinstance(item, str | Path | bytes | bytearray):
        image = _open_image(item)
    elif isinstance(item, Image.Image):
        _check_pixel_count(item)
        image = ImageOps.exif_transpose(item)
    elif isinstance(item, np.ndarray):
        image = _array_to_image(item)
    elif _is_missing(item):
        raise UnsupportedImageError(
            f"the image is missing ({item!r}); fill or drop missing rows first"
        )
    else:
        raise UnsupportedImageError(
            "an image must be a path, bytes, a PIL image or a numpy array; got "
            f"{type(item).__name__}"
        )
    if image.width == 0 or image.height == 0:
        raise ValueError(f"the image has no pixels (size {image.size})")
    return _to_rgb_mode(image)


def _resized_shape(width, height, size):
    if isinstance(size, tuple):
        return size[1], size[0]
    # The shortest edge becomes `size`; the other edge is truncated, not
    # rounded, the way the reference processors compute it.
    if width <= height:
        return size, max(1, int(size * height / width))
    return max(1, int(size * width / height)), size


def resize_and_crop(image, config):
    """Resize and centre-crop an RGB image; return HWC ``uint8``.

    An image so elongated that the resized copy would exceed
    ``_RESIZE_HEADROOM`` times the crop area is resampled only where the crop
    keeps it (Pillow's ``box``), so a 1 x 100,000 strip costs no more memory
    than a square photo. Other images take the plain resize-then-crop path of
    the reference processors, resized by :func:`_resize`.
    """
    if config.size is not None:
        new_size = _resized_shape(image.width, image.height, config.size)
        if config.crop is not None and _needs_bounded_resize(new_size, config.crop):
            return np.asarray(_resize_cropped(image, new_size, config), np.uint8)
        if new_size != image.size:
            image = _resize(image, new_size, config.resample)
    array = np.asarray(image, dtype=np.uint8)
    if config.crop is not None:
        array = _center_crop(array, config.crop)
    return array


def _resize(image, new_size, resample):
    """``image.resize(new_size, resample)`` as HWC ``uint8``, in torch if it can."""
    mode = _TORCH_RESIZE_MODES.get(resample)
    if mode is None:
        return np.asarray(image.resize(new_size, resample=resample), np.uint8)
    # np.array copies: torch refuses to wrap Pillow's read-only buffer.
    pixels = torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1)
    width, height = new_size
    resized = torch.nn.functional.interpolate(
        pixels[None], size=(height, width), mode=mode, antialias=True
    )
    return resized[0].permute(1, 2, 0).numpy()


def _needs_bounded_resize(new_size, crop):
    width, height = new_size
    crop_h, crop_w = crop
    fits = width >= crop_w and height >= crop_h  # else the crop pads instead
    return fits and width * height > _RESIZE_HEADROOM * crop_h * crop_w


def _resize_cropped(image, new_size, config):
    # The crop window of the resized image, mapped back to source coordinates:
    # Pillow resamples that region at the same scale as the whole resize would.
    (width, height), (crop_h, crop_w) = new_size, config.crop
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    scale_x, scale_y = image.width / width, image.height / height
    box = (
        left * scale_x,
        top * scale_y,
        (left + crop_w) * scale_x,
        (top + crop_h) * scale_y,
    )
    return image.resize((crop_w, crop_h), resample=config.resample, box=box)


def _center_crop(array, crop):
    height, width = array.shape[:2]
    crop_h, crop_w = crop
    if height < crop_h or width < crop_w:
        # Smaller than the crop: pad with zeros around it, as the reference does.
        padded = np.zeros((max(height, crop_h), max(width, crop_w), 3), np.uint8)
        top, left = (padded.shape[0] - height) // 2, (padded.shape[1] - width) // 2
        padded[top : top + height, left : left + width] = array
        array, (height, width) = padded, padded.shape[:2]
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return array[top : top + crop_h, left : left + crop_w]


def prepare_image(item, config):
    """One input -> what the model's pixels are made from.

    An HWC ``uint8`` array under an :class:`ImageConfig`, a record of the
    processor's outputs under :class:`ProcessorImages`.
    """
    if isinstance(config, ProcessorImages):
        return config.prepare(to_rgb(item))
    if isinstance(item, str | Path | bytes | bytearray):
        # Decoded here rather than in to_rgb, so a large JPEG can be drafted.
        item = _open_image(item, draft_for=config)
    return resize_and_crop(to_rgb(item), config)


def normalize_batch(arrays, config, device="cpu", dtype=torch.float32):
    """Stack HWC ``uint8`` arrays into normalised NCHW pixel tensors.

    The arithmetic runs once per batch on ``device``: on a GPU only the small
    ``uint8`` batch crosses the bus, from pinned memory without blocking.
    Under :class:`ProcessorImages` the processor's records are stacked into a
    dict of the model's inputs instead.
    """
    if isinstance(config, ProcessorImages):
        return config.collate(arrays, device, dtype)
    batch = torch.from_numpy(np.stack(arrays))
    device = torch.device(device)
    if device.type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)
    pixels = batch.to(device).permute(0, 3, 1, 2).float()
    mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(config.std, device=device).view(1, 3, 1, 1)
    # In place: one float copy of the batch rather than four.
    pixels.mul_(config.rescale_factor).sub_(mean).div_(std)
    return pixels.to(dtype)


def pixel_values(images, config, device="cpu", dtype=torch.float32):
    """Any sequence of supported image inputs -> the model's pixel tensors.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip._encoding.images import ImageConfig, pixel_values
    >>> config = ImageConfig(size=32, crop=(32, 32))
    >>> pixel_values([np.zeros((48, 64, 3), np.uint8)], config).shape
    torch.Size([1, 3, 32, 32])
    """
    return normalize_batch(
        [prepare_image(item, config) for item in images], config, device, dtype
    )
