"""Getting a model handle: :func:`load_model` and the process-wide cache.

Every estimator reaches its weights through :func:`load_model`, which keeps one
:class:`~sklearn_clip.ModelHandle` per ``(source, revision, device, dtype,
compile)`` in this process: a grid search over many candidates and folds loads
the weights once. A handle read back from a pickle comes from here too, and is
checked to hold the weights it was pickled with.
"""

import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import torch

from sklearn_clip._encoding.handle import DEFAULT_MODEL, ModelHandle
from sklearn_clip._models.fingerprints import weights_fingerprint
from sklearn_clip._models.loading import (
    check_source,
    hub_snapshot,
    is_local,
    read_checkpoint,
)
from sklearn_clip._models.weights import (
    at_precision,
    cast_weights,
    resolve_device,
    resolve_dtype,
    weights_dtype,
)

# ModelHandle too: pickles of 0.1.0 name it sklearn_clip._model.ModelHandle,
# and that old module name now leads here (sklearn_clip._compat).
__all__ = ["ModelHandle", "clear_model_cache", "load_model", "model_cache_info"]

_cache = OrderedDict()
_cache_lock = threading.RLock()
_stats = {"loads": 0, "hits": 0}
# Per cache key, over the life of the process (evictions and clears included):
# how often the weights were read, and how often a request found them held.
_key_stats = {}


def _cache_size():
    return int(os.environ.get("SKLEARN_CLIP_MODEL_CACHE_SIZE", "4"))


def _load_directory(source, device, dtype):
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


def load_model(
    source=DEFAULT_MODEL,
    *,
    revision=None,
    device="auto",
    dtype="auto",
    local_files_only=None,
    compile=False,
):
    """Load a CLIP-family model once per process and return its handle.

    Parameters
    ----------
    source : str, os.PathLike or ModelHandle, default="openai/clip-vit-base-patch32"
        A Hugging Face hub id, a local directory written by ``save_pretrained``,
        or a handle (returned as is).
    revision : str, default=None
        A hub branch, tag or commit to pin.
    device : {"auto", "cpu", "cuda", "mps"} or str, default="auto"
        ``"auto"`` picks cuda, then mps, then cpu.
    dtype : {"auto", "float32", "bfloat16", "float16"}, default="auto"
        ``"auto"`` is bfloat16 (or float16) on a GPU, bfloat16 on a CPU with
        native bfloat16 matrix units (AMX, AVX512-BF16), else float32, as the
        hardware reports it; :func:`~sklearn_clip.set_config` forces one
        precision instead. ``handle.dtype`` shows the choice. Whatever it is,
        :meth:`ModelHandle.save_pretrained` writes the checkpoint's own
        precision.
    local_files_only : bool, default=None
        Never touch the network. None means: only when ``HF_HUB_OFFLINE`` is
        set, or when the hub cannot be reached.
    compile : bool or dict, default=False
        Run the image forward pass through ``torch.compile``, which fuses the
        work between the matrix products: on an H200 it raised ViT-B/32 from
        about 31,000 to 37,000 images/s in bfloat16 (``docs/performance.md``).
        A dict is passed to ``torch.compile`` as keyword arguments
        (``{"mode": "max-autotune"}``). Compiling costs tens of seconds on
        the first batch, and once more when the batch size first changes, so
        it pays off for long jobs on a GPU. Text encoding and fine-tuning stay
        eager.

    Returns
    -------
    ModelHandle
        Shared by every estimator that asks for the same model, device and dtype.

    Examples
    --------
    >>> from sklearn_clip import load_model
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> handle = load_model(make_tiny_clip())
    >>> handle.encode_texts(["a red circle", "a blue square"]).shape
    (2, 32)
    """
    if isinstance(source, ModelHandle):
        return source
    if not isinstance(source, str | os.PathLike):
        raise TypeError(
            "model must be a hub id, a local directory or a ModelHandle; got "
            f"{type(source).__name__}"
        )
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    compile_options = _compile_options(compile)
    check_source(source)
    local = is_local(source)
    key_source = os.path.realpath(source) if local else str(source)
    key = (key_source, revision, str(device), str(dtype), repr(compile_options))
    with _cache_lock:
        counts = _key_stats.setdefault(key, {"loads": 0, "hits": 0})
        if key in _cache:
            _stats["hits"] += 1
            counts["hits"] += 1
            _cache.move_to_end(key)
            return _cache[key]
        handle = _load_with_clear_errors(
            source, revision, device, dtype, local_files_only, local
        )
        handle.compile_options = compile_options
        _stats["loads"] += 1
        counts["loads"] += 1
        _cache[key] = handle
        while len(_cache) > max(1, _cache_size()):
            _cache.popitem(last=False)
        return handle


def _compile_options(compile):
    """``torch.compile`` keyword arguments from ``load_model``'s ``compile``."""
    if compile is False or compile is None:
        return None
    if compile is True:
        return {}
    if isinstance(compile, dict):
        return dict(sorted(compile.items()))
    raise TypeError(
        "compile must be True, False or a dict of torch.compile arguments; "
        f"got {type(compile).__name__}"
    )


def _load_with_clear_errors(source, revision, device, dtype, local_files_only, local):
    # Loading always happens from a local directory: hub ids are resolved to
    # their cached snapshot first, so no library call can wander onto the
    # network (and retry for a minute) when there is none.
    directory = source if local else hub_snapshot(source, revision, local_files_only)
    handle = _load_directory(directory, device, dtype)
    if not local:
        handle.source, handle.revision = str(source), revision
    return handle


def model_cache_info():
    """What the process-wide model cache holds, and how often it loaded.

    In the spirit of :func:`functools.lru_cache`'s ``cache_info()``: call it
    in a worker process (``client.run(model_cache_info)`` on a Dask cluster)
    to check that the worker read the weights once.

    Returns
    -------
    dict
        ``loads``: weights read in this process (cache misses); ``hits``:
        requests served from the cache; ``size``: models held now;
        ``maxsize``: how many it holds at most
        (``SKLEARN_CLIP_MODEL_CACHE_SIZE``, default 4); ``models``: one dict
        per model held, least recently used first, with its ``source``,
        ``revision``, ``device``, ``dtype``, ``compile`` (the repr of the
        ``torch.compile`` options, ``"None"`` for eager) and its own
        ``loads`` and ``hits`` in this process (``loads`` above 1 means it was
        evicted or cleared and read again). Counts survive
        :func:`clear_model_cache`.

    Examples
    --------
    >>> from sklearn_clip import load_model, model_cache_info
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> sorted(model_cache_info())
    ['hits', 'loads', 'maxsize', 'models', 'size']
    >>> import tempfile
    >>> handle = load_model(make_tiny_clip(tempfile.mkdtemp()))  # a new model
    >>> held = model_cache_info()["models"][-1]
    >>> held["loads"], held["dtype"] == str(handle.dtype).removeprefix("torch.")
    (1, True)
    """
    with _cache_lock:
        models = [
            {
                "source": source,
                "revision": revision,
                "device": device,
                "dtype": dtype.removeprefix("torch."),
                "compile": compile_options,
                **_key_stats[key],
            }
            for key in _cache
            for source, revision, device, dtype, compile_options in [key]
        ]
        return {
            "loads": _stats["loads"],
            "hits": _stats["hits"],
            "size": len(_cache),
            "maxsize": max(1, _cache_size()),
            "models": models,
        }


def clear_model_cache():
    """Forget every cached model (their memory is freed once unused).

    Examples
    --------
    >>> from sklearn_clip import clear_model_cache, load_model, model_cache_info
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> handle = load_model(make_tiny_clip())
    >>> clear_model_cache()
    >>> model_cache_info()["size"]
    0
    """
    with _cache_lock:
        _cache.clear()


def cached_handles():
    """The handles held by the cache, for checks that they are never modified."""
    with _cache_lock:
        return list(_cache.values())


def rebuild_handle(state):
    """The handle that :meth:`ModelHandle.__getstate__` described."""
    if "reference" in state:
        return _load_reference(*state["reference"])
    return _handle_from_files(state["files"], state["dtype"], state["device_type"])


def _load_reference(source, revision, device, dtype, compile=None, fingerprint=None):
    """The handle a pickle refers to: loaded again, and checked to be the same."""
    # Weights pickled on a GPU machine may be read where there is none.
    if device != "cpu" and resolve_device("auto").type != device:
        device, dtype = "auto", "auto"
    handle = load_model(
        source, revision=revision, device=device, dtype=dtype, compile=compile
    )
    check_same_model(handle, fingerprint, "a pickled model handle")
    return handle


def check_same_model(handle, fingerprint, what):
    """Refuse ``handle`` unless its weights are those ``fingerprint`` names.

    None (pickles of 0.1.0, which did not record it) is not checked.
    """
    if fingerprint is None or handle.fingerprint == fingerprint:
        return
    where = "in memory" if handle.source is None else f"at {handle.source!r}"
    raise ValueError(
        f"{what} was made with other weights than those now {where}: that "
        "folder was rewritten with another model, so "
        "its answers would be in another embedding space. Put the original "
        "weights back at that path, or fit again with the weights there now "
        "(to carry the weights inside a pickle, fit with "
        "store_weights_in_pickle=True)."
    )


def _handle_from_files(files, dtype="auto", device_type=None):
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
    model, master = at_precision(stored, device, resolve_dtype(dtype, device))
    return ModelHandle(model, tokenizer, processor, master=master)
