"""The precision rule behind ``dtype="auto"``, for inference and for training.

The rule reads what the hardware reports, never a timing, so every process of
a machine (Dask workers, a grid search's jobs, ``torchrun`` ranks) decides the
same, whatever the load at that moment:

- weights for inference: bfloat16 on GPUs that have it (float16 on older
  ones), float16 on Apple GPUs, bfloat16 on CPUs with native bfloat16 matrix
  units (Intel AMX tiles or AVX512-BF16 dot products, as torch reports them,
  with oneDNN available), float32 on every other CPU, where bfloat16 would be
  emulated and slower;
- fine-tuning: float32 master weights always; bfloat16 autocast on GPUs that
  have it, and on CPUs with native units only for models at least
  :data:`CPU_BF16_TRAINING_MIN_WIDTH` wide, because on narrow models the casts
  and bfloat16's slower layer-norm and attention backward passes cost more than
  the matrix products save (``docs/performance.md`` has the measurements).

:func:`sklearn_clip.set_config` (or ``SKLEARN_CLIP_AUTO_DTYPE``) replaces the
rule by one precision (per thread, like scikit-learn's settings).
"""

import functools
import os

import torch

from sklearn_clip._config import get_config

#: Environment variable that replaces torch's report of native bfloat16 units:
#: ``"native"`` (as if the CPU had them) or ``"none"`` (as if it had not). It
#: shows what ``"auto"`` does on another kind of CPU, and lets a test suite
#: check both kinds on one machine.
CPU_BF16_VARIABLE = "SKLEARN_CLIP_CPU_BF16"

#: Fine-tuning on a CPU autocasts to bfloat16 only for models whose widest
#: tower has at least this hidden size (ViT-B's 768 and up).
CPU_BF16_TRAINING_MIN_WIDTH = 768

_UNIT_QUERIES = {
    "amx": "_is_amx_tile_supported",
    "avx512_bf16": "_is_avx512_bf16_supported",
}


def _cpu_query(name):
    # torch.cpu's capability queries are private and may be missing from
    # other releases: a missing or failing one means "not available".
    query = getattr(torch.cpu, name, None)
    try:
        return bool(query()) if query is not None else False
    except (RuntimeError, AttributeError):
        return False


@functools.cache
def _reported_units():
    if not torch.backends.mkldnn.is_available():
        return ()
    return tuple(unit for unit, query in _UNIT_QUERIES.items() if _cpu_query(query))


def cpu_bf16_units():
    """The native bfloat16 matrix units of this CPU, as torch reports them.

    Returns
    -------
    tuple of str
        A subset of ``("amx", "avx512_bf16")``; empty where bfloat16 would be
        emulated, or where torch was built without oneDNN (which runs
        bfloat16 matrix products on those units). ``SKLEARN_CLIP_CPU_BF16``
        replaces the report: ``"native"`` gives ``("avx512_bf16",)`` and
        ``"none"`` gives ``()``.

    Examples
    --------
    >>> from sklearn_clip._backends.torch.precision import cpu_bf16_units
    >>> set(cpu_bf16_units()) <= {"amx", "avx512_bf16"}
    True
    """
    override = os.environ.get(CPU_BF16_VARIABLE, "").strip().lower()
    if override in ("", "host"):
        return _reported_units()
    if override not in ("native", "none"):
        raise ValueError(
            f"{CPU_BF16_VARIABLE} must be 'native', 'none' or unset; got {override!r}"
        )
    return ("avx512_bf16",) if override == "native" else ()


def _forced_dtype():
    """The precision forced by ``set_config(auto_dtype=...)``, or None for the rule."""
    forced = get_config()["auto_dtype"]
    return None if forced == "rule" else getattr(torch, forced)


def auto_dtype(device):
    """The weights' dtype that ``dtype="auto"`` means on ``device``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_clip._backends.torch.precision import auto_dtype, cpu_bf16_units
    >>> auto_dtype(torch.device("cpu")) == (
    ...     torch.bfloat16 if cpu_bf16_units() else torch.float32
    ... )
    True
    """
    forced = _forced_dtype()
    if forced is not None:
        return forced
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    if device.type == "cpu" and cpu_bf16_units():
        return torch.bfloat16
    return torch.float32


def model_width(model):
    """The hidden size of a model's widest tower (0 where none is declared)."""
    config = model.config
    widths = [
        getattr(getattr(config, tower, None), "hidden_size", 0) or 0
        for tower in ("vision_config", "text_config")
    ]
    return int(max(widths))


def training_autocast_dtype(device, dtype, model):
    """The autocast dtype for fine-tuning ``model``, or None to train in float32.

    Parameters
    ----------
    device : torch.device
        Where training runs.
    dtype : {"auto", "float32", "bfloat16", "float16"}
        The fine-tuner's ``dtype``. ``"float32"`` trains in float32; so does
        ``"float16"`` (float16 autocast would need loss scaling), whose model
        is stored in float16 after training. ``"bfloat16"`` autocasts to
        bfloat16 wherever it runs. ``"auto"`` follows the thread's setting,
        else the rule in this module's description.
    model : transformers model
        The model to be trained; its width decides on CPUs.

    Returns
    -------
    torch.dtype or None

    Examples
    --------
    >>> import torch
    >>> from sklearn_clip import load_model
    >>> from sklearn_clip._backends.torch.precision import training_autocast_dtype
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> tiny = load_model(make_tiny_clip(), device="cpu").model
    >>> print(training_autocast_dtype(torch.device("cpu"), "auto", tiny))
    None
    """
    if dtype == "auto":
        forced = _forced_dtype()
        if forced is None:
            return _rule_autocast_dtype(device, model)
        dtype = dtype_name(forced)
    return torch.bfloat16 if dtype == "bfloat16" else None


def _rule_autocast_dtype(device, model):
    """The hardware rule's autocast dtype for ``model`` (see the module's text)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_bf16_units():
        if model_width(model) >= CPU_BF16_TRAINING_MIN_WIDTH:
            return torch.bfloat16
    return None


def dtype_name(dtype):
    """``torch.bfloat16`` -> ``"bfloat16"``: how fitted estimators record it."""
    return str(dtype).removeprefix("torch.")
