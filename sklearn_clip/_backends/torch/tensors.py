"""Inputs as PyTorch tensors: token ids, and pixel batches normalised on the device.

The encoding pipeline (:mod:`sklearn_clip._encoding`) prepares rows as NumPy
arrays for every backend; the PyTorch backend and training turn them into
tensors here.
"""

import numpy as np
import torch

from sklearn_clip._encoding.images import prepare_image
from sklearn_clip._encoding.preprocess import ProcessorImages
from sklearn_clip._encoding.tokens import token_ids


def tokenize(handle, texts, device=None):
    """Token ids and attention mask as PyTorch tensors (mask None where the
    family uses none), on ``device``: :func:`~sklearn_clip._encoding.tokens.token_ids`
    for the PyTorch models and their training."""
    input_ids, mask = token_ids(handle, texts)
    device = device or "cpu"
    input_ids = torch.from_numpy(input_ids).to(device)
    return input_ids, None if mask is None else torch.from_numpy(mask).to(device)


def normalize_batch(arrays, config, device="cpu", dtype=None):
    """Stack HWC ``uint8`` arrays into normalised NCHW pixel tensors.

    The arithmetic runs once per batch on ``device``: on a GPU only the small
    ``uint8`` batch crosses the bus, from pinned memory without blocking.
    Under :class:`ProcessorImages` the processor's records are stacked into a
    dict of the model's inputs instead.
    """
    dtype = dtype or torch.float32
    if isinstance(config, ProcessorImages):
        return _collate_records(arrays, device, dtype)
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


def _collate_records(records, device, dtype):
    """The processor's records of a batch, stacked into the model's inputs."""
    batch = np.stack(records) if isinstance(records, list) else records
    inputs = {}
    for key in batch.dtype.names:
        tensor = torch.from_numpy(np.ascontiguousarray(batch[key])).to(device)
        inputs[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return inputs


def pixel_values(images, config, device="cpu", dtype=None):
    """Any sequence of supported image inputs -> the model's pixel tensors.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip._backends.torch.tensors import pixel_values
    >>> from sklearn_clip._encoding.preprocess import ImageConfig
    >>> config = ImageConfig(size=32, crop=(32, 32))
    >>> pixel_values([np.zeros((48, 64, 3), np.uint8)], config).shape
    torch.Size([1, 3, 32, 32])
    """
    return normalize_batch(
        [prepare_image(item, config) for item in images], config, device, dtype
    )
