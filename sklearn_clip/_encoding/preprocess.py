"""Decoded RGB images -> the model's pixel tensors, as its image processor says.

The checkpoint's image processor (resolved by transformers) decides the
preprocessing. For the processors whose steps are proven equal here (CLIP's
and SigLIP's: resize, centre crop, rescale, normalise; see
``tests/encoding/test_images.py``) an :class:`ImageConfig` takes those settings and
runs them faster: bicubic and bilinear resizes through PyTorch's antialiased
``uint8`` interpolation, the kernel that transformers' default (torchvision)
image processors use, four times faster than Pillow's on one core and within
one grey level of the Pillow processors, and rescaling and normalisation once
per batch as tensor arithmetic. Every other processor runs itself, row by row
in the decoding threads (:class:`ProcessorImages`), so whatever inputs its
model takes (SigLIP 2's patch masks and shapes, for one) come with it.
"""

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from sklearn_clip._encoding.resample import resize_uint8
from sklearn_clip._torch import torch_or_none

_OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# Resizing the shortest edge first makes an intermediate image that grows with
# the aspect ratio (a 1 x 100,000 strip becomes 3,000,000 x 30 pixels for a
# 30-pixel model). Beyond this many times the crop area only the part that
# survives the centre crop is resampled, so memory stays bounded.
_RESIZE_HEADROOM = 16

# Pillow filters that PyTorch computes with the same antialiased kernel (and
# sklearn_clip._encoding.resample, where PyTorch is not installed).
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
    crop_round : bool, default=False
        Centre-crop offsets rounded half to even, as torchvision's
        ``CenterCrop`` (open_clip's transform) computes them, rather than
        floored, as transformers' Pillow processors do; they differ by one
        pixel where the excess is 3 modulo 4. Set by the setting
        ``"crop_offsets": "round"``, which open_clip conversions save.
    """

    size: int | tuple[int, int] = 224
    crop: tuple[int, int] | None = (224, 224)
    resample: int = Image.Resampling.BICUBIC
    rescale_factor: float = 1 / 255
    mean: tuple[float, float, float] = _OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = _OPENAI_CLIP_STD
    draft_factor: float | None = 2.0
    crop_round: bool = False

    @property
    def output_size(self):
        """The ``(height, width)`` of the pixel tensors."""
        if self.crop is not None:
            return self.crop
        if isinstance(self.size, tuple):
            return self.size
        raise ValueError("A shortest-edge resize without a crop has no fixed size.")


# Image processors whose steps ImageConfig reproduces (proven against each in
# tests/encoding/test_images.py), by class name: the Pillow and torchvision variants.
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
    "crop_offsets",
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
    if settings.get("crop_offsets") not in (None, "floor", "round"):
        return None
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
        crop_round=settings.get("crop_offsets") == "round",
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
        array = _center_crop(array, config.crop, config.crop_round)
    return array


def _resize(image, new_size, resample):
    """``image.resize(new_size, resample)`` as HWC ``uint8``, with PyTorch's
    antialiased kernel where the filter has one (in NumPy without PyTorch)."""
    mode = _TORCH_RESIZE_MODES.get(resample)
    if mode is None:
        return np.asarray(image.resize(new_size, resample=resample), np.uint8)
    width, height = new_size
    torch = torch_or_none()
    if torch is None:
        return resize_uint8(np.asarray(image, np.uint8), height, width, mode)
    # np.array copies: torch refuses to wrap Pillow's read-only buffer.
    pixels = torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1)
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
    top, left = _offsets(height - crop_h, width - crop_w, config.crop_round)
    scale_x, scale_y = image.width / width, image.height / height
    box = (
        left * scale_x,
        top * scale_y,
        (left + crop_w) * scale_x,
        (top + crop_h) * scale_y,
    )
    return image.resize((crop_w, crop_h), resample=config.resample, box=box)


def _offsets(excess_h, excess_w, round_half_even):
    """Top and left offsets of a centred crop: floored, or torchvision's."""
    if round_half_even:
        return int(round(excess_h / 2)), int(round(excess_w / 2))
    return excess_h // 2, excess_w // 2


def _center_crop(array, crop, round_half_even=False):
    height, width = array.shape[:2]
    crop_h, crop_w = crop
    if height < crop_h or width < crop_w:
        # Smaller than the crop: pad with zeros around it, as the reference does.
        padded = np.zeros((max(height, crop_h), max(width, crop_w), 3), np.uint8)
        top, left = (padded.shape[0] - height) // 2, (padded.shape[1] - width) // 2
        padded[top : top + height, left : left + width] = array
        array, (height, width) = padded, padded.shape[:2]
    top, left = _offsets(height - crop_h, width - crop_w, round_half_even)
    return array[top : top + crop_h, left : left + crop_w]


def normalize_batch_numpy(arrays, config):
    """Stack HWC ``uint8`` arrays into normalised NCHW float32 pixels, in NumPy.

    The same float32 operations in the same order as the PyTorch backend's
    :func:`~sklearn_clip._backends.torch.tensors.normalize_batch`,
    so the pixels are equal bit for bit. Under :class:`ProcessorImages` the
    records become a dict of the model's inputs.
    """
    if isinstance(config, ProcessorImages):
        batch = np.stack(arrays) if isinstance(arrays, list) else arrays
        return {key: np.ascontiguousarray(batch[key]) for key in batch.dtype.names}
    pixels = np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32)
    mean = np.asarray(config.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(config.std, np.float32).reshape(1, 3, 1, 1)
    pixels *= np.float32(config.rescale_factor)
    pixels -= mean
    pixels /= std
    return pixels
