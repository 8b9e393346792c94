"""Making a PyTorch model handle: from a checkpoint folder, or from pickled files."""

import tempfile
from pathlib import Path

import torch

from sklearn_clip._backends.torch.checkpoint import read_checkpoint
from sklearn_clip._backends.torch.fingerprints import weights_fingerprint
from sklearn_clip._backends.torch.handle import ModelHandle
from sklearn_clip._backends.torch.weights import (
    at_precision,
    cast_weights,
    resolve_device,
    resolve_dtype,
    weights_dtype,
)


def handle_from_directory(source, device, dtype):
    """A handle around the checkpoint in ``source``, run at ``device``/``dtype``."""
    model, tokenizer, processor = read_checkpoint(source, device, None)
    stored_dtype = weights_dtype(model)
    # The identity is of the weights as stored; casting replaces them.
    fingerprint = weights_fingerprint(model) if stored_dtype != dtype else None
    model = cast_weights(model, device, dtype)
    handle = ModelHandle(
        model,
        tokenizer,
        processor,
        source=str(source),
        device=device,
        dtype=dtype,
        stored_dtype=stored_dtype,
    )
    handle._directory = str(source)
    handle._stored_fingerprint = fingerprint
    return handle


def float32_cpu_handle(source):
    """A float32 handle on the CPU of the checkpoint in ``source``: what an
    export is traced from."""
    return handle_from_directory(source, torch.device("cpu"), torch.float32)


def handle_from_files(files, dtype="auto", device_type=None):
    """A handle around checkpoint files carried in a pickle, ``{name: bytes}``."""
    # Pickles written before the precision was recorded hold the files only;
    # a GPU's precision does not carry over to a machine without one.
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            Path(tmp, Path(name).name).write_bytes(data)
        stored, tokenizer, processor = read_checkpoint(tmp, torch.device("cpu"), None)
    # The weights were written at their stored precision; they run at the
    # pickled handle's precision, or at what "auto" means here.
    device = resolve_device("auto")
    if device_type is not None and device_type != device.type:
        dtype = "auto"
    # None (pickles of 0.1.0): the precision the files hold, as 0.1.0 ran them.
    dtype = weights_dtype(stored) if dtype is None else resolve_dtype(dtype, device)
    model, master = at_precision(stored, device, dtype)
    return ModelHandle(model, tokenizer, processor, master=master)
