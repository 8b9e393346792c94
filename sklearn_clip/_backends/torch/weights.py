"""Where weights run and at what precision: devices, dtypes and casts.

A model is stored at one precision (float32 for most checkpoints) and may run
at another (bfloat16 on hardware that has it). The helpers here decide the
device and the precision, and make the lower-precision copy without touching
the stored one, which saving and fine-tuning keep using.
"""

import copy

import torch

from sklearn_clip._backends.torch.precision import auto_dtype
from sklearn_clip._options import DTYPE_NAMES


def resolve_device(device="auto"):
    """``"auto"`` picks cuda, then mps, then cpu; anything else is checked."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            "device (--device) must be 'auto', 'cpu', 'cuda', a GPU by index "
            "such as 'cuda:0', 'mps', or another device type torch knows; got "
            f"{device!r}"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} was asked for, but CUDA is not available"
        )
    return device


def resolve_dtype(dtype, device):
    """``"auto"`` follows :func:`~sklearn_clip._backends.torch.precision.auto_dtype`.

    That is bfloat16 on GPUs that have it (else float16), and on CPUs with
    native bfloat16 matrix units; float32 elsewhere, unless
    :func:`~sklearn_clip.set_config` forces one precision. Names are checked.
    """
    if dtype is None or dtype == "auto":
        return auto_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"dtype must be 'auto' or one of {DTYPE_NAMES}; got {dtype!r}")
    return getattr(torch, dtype)


def weights_dtype(model):
    """The precision of a model's weights: that of its largest tensor.

    Not the first parameter's, which may be a float32 temperature kept beside
    bfloat16 weights (see :func:`cast_weights`).
    """
    return max(model.parameters(), key=lambda p: p.numel()).dtype


def cast_weights(model, device, dtype):
    """``model`` moved to ``device`` and ``dtype``, in place, but for its scalars.

    The single-number parameters (the temperature, SigLIP's bias) keep their
    precision: they scale every logit, and bfloat16 would round CLIP's
    ``exp(logit_scale) = 100`` to a step of 0.5.
    """
    scalars = {
        name: parameter.detach().clone()
        for name, parameter in model.named_parameters()
        if parameter.numel() == 1
    }
    model.to(device=device, dtype=dtype)
    with torch.no_grad():
        for name, value in scalars.items():
            model.get_parameter(name).data = value.to(device)
    return model


def at_precision(model, device, dtype):
    """``(model to run, master copy or None)`` for running ``model`` at ``dtype``.

    ``nn.Module.to`` converts in place, so a lower-precision copy is made from
    the master, which stays on the CPU and is never converted.
    """
    if weights_dtype(model) == dtype:
        return model.to(device), None
    master = model.to("cpu")
    return cast_weights(copy.deepcopy(master), device, dtype), master


def as_numpy_state(model):
    """A CPU numpy copy of a model's weights (for comparisons in tests)."""
    return {
        k: v.detach().cpu().float().numpy().copy()
        for k, v in model.state_dict().items()
    }
