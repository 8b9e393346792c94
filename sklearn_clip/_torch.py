"""PyTorch where it is installed.

Models exported to ONNX Runtime or OpenVINO encode without PyTorch, so the
modules on that path import it only when a PyTorch model asks for it.
"""

import functools
import sys


@functools.cache
def torch_or_none():
    """The ``torch`` module, or None where it cannot be imported."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def is_tensor(item):
    """Whether ``item`` is a PyTorch tensor (never, where torch is not loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(item, torch.Tensor)
