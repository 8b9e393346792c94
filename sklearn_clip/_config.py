"""Settings per thread, in the shape of scikit-learn's ``set_config``.

One setting so far, ``auto_dtype``: what ``dtype="auto"`` means for every
estimator and :func:`~sklearn_clip.load_model` call that leaves ``dtype`` at
``"auto"``. As in scikit-learn, each thread has its own copy of the settings:
:func:`set_config` and :func:`config_context` change the calling thread's only,
so a context in one thread never changes another's precision. A new thread
starts from the process defaults, which come from the
``SKLEARN_CLIP_AUTO_DTYPE`` environment variable, so that every worker process
of a job (Dask, joblib, ``torchrun``) can be given the same policy without code.
Threads the package starts for one call (image decoding) take the caller's
settings.
"""

import os
import threading
from contextlib import contextmanager

from sklearn_clip._options import DTYPE_NAMES

#: The environment variable that sets ``auto_dtype`` when the process starts.
AUTO_DTYPE_VARIABLE = "SKLEARN_CLIP_AUTO_DTYPE"

#: What ``auto_dtype`` accepts: the hardware rule, or one precision for all.
AUTO_DTYPE_OPTIONS = ("rule", *DTYPE_NAMES)

# The process defaults, read from the environment once (on first use, so that
# a bad value is reported where a setting is asked for, not at import).
_defaults_lock = threading.Lock()
_defaults = {}
# Each thread's own settings: a copy of the defaults, made on its first use.
_local = threading.local()


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


def _process_defaults():
    with _defaults_lock:
        if not _defaults:
            _defaults.update(_from_environment())
        return dict(_defaults)


def _thread_settings():
    """This thread's settings, **mutable**; copied from the defaults on first use."""
    settings = getattr(_local, "settings", None)
    if settings is None:
        settings = _local.settings = _process_defaults()
    return settings


def get_config():
    """The current values of sklearn-clip's settings in this thread.

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
    # A copy, so that changing the dict changes no setting.
    return dict(_thread_settings())


def set_config(auto_dtype=None):
    """Set sklearn-clip's settings in this thread.

    Parameters
    ----------
    auto_dtype : {"rule", "float32", "bfloat16", "float16"}, default=None
        What ``dtype="auto"`` means for every estimator and
        :func:`~sklearn_clip.load_model` call in this thread. ``"rule"``
        (the default) follows the hardware: bfloat16 on GPUs that have it
        (float16 on older ones) and on CPUs with native bfloat16 matrix units
        (Intel AMX, AVX512-BF16), float32 on every other CPU; fine-tuning
        autocasts to bfloat16 only where that pays for the model being
        trained. A precision name forces it everywhere, training included
        (``"float32"`` turns autocast off). The environment variable
        ``SKLEARN_CLIP_AUTO_DTYPE`` gives every thread's starting value. None
        leaves the setting unchanged. An explicit ``dtype=`` on an estimator
        always wins.

    Notes
    -----
    Settings are per thread, as scikit-learn's: other threads, running or
    started later, keep their own (those a thread starts begin from the
    environment's value); threads the package starts for one call take the
    caller's.

    Examples
    --------
    >>> from sklearn_clip import get_config, set_config
    >>> set_config(auto_dtype="float32")
    >>> get_config()["auto_dtype"]
    'float32'
    >>> set_config(auto_dtype="rule")
    """
    settings = _thread_settings()
    if auto_dtype is not None:
        settings["auto_dtype"] = _check_auto_dtype(auto_dtype, "auto_dtype")


@contextmanager
def config_context(*, auto_dtype=None):
    """Change sklearn-clip's settings inside a ``with`` block, in this thread only.

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
