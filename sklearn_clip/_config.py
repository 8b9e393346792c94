"""Process-wide settings, in the shape of scikit-learn's ``set_config``.

One setting so far, ``auto_dtype``: what ``dtype="auto"`` means in this
process, for every estimator and :func:`~sklearn_clip.load_model` call that
leaves ``dtype`` at ``"auto"``. Its starting value comes from the
``SKLEARN_CLIP_AUTO_DTYPE`` environment variable, so that every worker process
of a job (Dask, joblib, ``torchrun``) can be given the same policy without code.
"""

import os
import threading
from contextlib import contextmanager

from sklearn_clip._options import DTYPE_NAMES

#: The environment variable that sets ``auto_dtype`` when the process starts.
AUTO_DTYPE_VARIABLE = "SKLEARN_CLIP_AUTO_DTYPE"

#: What ``auto_dtype`` accepts: the hardware rule, or one precision for all.
AUTO_DTYPE_OPTIONS = ("rule", *DTYPE_NAMES)

_lock = threading.Lock()
_settings = {}


def _check_auto_dtype(value, origin):
    if value not in AUTO_DTYPE_OPTIONS:
        raise ValueError(
            f"{origin} must be one of {AUTO_DTYPE_OPTIONS}; got {value!r}. "
            '"rule" follows the hardware (bfloat16 on GPUs and on CPUs with '
            "native bfloat16 units, float32 elsewhere)."
        )
    return value


def _from_environment():
    value = os.environ.get(AUTO_DTYPE_VARIABLE, "").strip() or "rule"
    return {"auto_dtype": _check_auto_dtype(value, AUTO_DTYPE_VARIABLE)}


def get_config():
    """The current values of sklearn-clip's process-wide settings.

    Returns
    -------
    dict
        ``auto_dtype``: what ``dtype="auto"`` resolves to (see
        :func:`set_config`).

    Examples
    --------
    >>> from sklearn_clip import get_config
    >>> sorted(get_config())
    ['auto_dtype']
    """
    with _lock:
        if not _settings:
            _settings.update(_from_environment())
        return dict(_settings)


def set_config(auto_dtype=None):
    """Set sklearn-clip's process-wide settings.

    Parameters
    ----------
    auto_dtype : {"rule", "float32", "bfloat16", "float16"}, default=None
        What ``dtype="auto"`` means for every estimator and
        :func:`~sklearn_clip.load_model` call in this process. ``"rule"``
        (the default) follows the hardware: bfloat16 on GPUs that have it
        (float16 on older ones) and on CPUs with native bfloat16 matrix units
        (Intel AMX, AVX512-BF16), float32 on every other CPU; fine-tuning
        autocasts to bfloat16 only where that pays for the model being
        trained. A precision name forces it everywhere, training included
        (``"float32"`` turns autocast off). The environment variable
        ``SKLEARN_CLIP_AUTO_DTYPE`` gives the starting value. None leaves the
        setting unchanged. An explicit ``dtype=`` on an estimator always wins.

    Examples
    --------
    >>> from sklearn_clip import get_config, set_config
    >>> set_config(auto_dtype="float32")
    >>> get_config()["auto_dtype"]
    'float32'
    >>> set_config(auto_dtype="rule")
    """
    get_config()  # read the environment first, so it never overrides this call
    with _lock:
        if auto_dtype is not None:
            _settings["auto_dtype"] = _check_auto_dtype(auto_dtype, "auto_dtype")


@contextmanager
def config_context(*, auto_dtype=None):
    """Change sklearn-clip's settings inside a ``with`` block only.

    Parameters
    ----------
    auto_dtype : {"rule", "float32", "bfloat16", "float16"}, default=None
        See :func:`set_config`.

    Yields
    ------
    None
        The settings hold until the block ends, then the previous ones return.

    Examples
    --------
    >>> from sklearn_clip import config_context, load_model
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> with config_context(auto_dtype="float32"):
    ...     handle = load_model(make_tiny_clip(), device="cpu")
    >>> handle.dtype
    torch.float32
    """
    old = get_config()
    set_config(auto_dtype=auto_dtype)
    try:
        yield
    finally:
        set_config(**old)
