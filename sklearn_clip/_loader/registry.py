"""Getting a model handle: :func:`load_model` and the process-wide cache.

Every estimator reaches its weights through :func:`load_model`, which keeps one
handle per ``(source, revision, device, dtype, compile, backend)`` in this
process: a grid search over many candidates and folds loads the weights once.
PyTorch handles (:class:`~sklearn_clip.ModelHandle`) and exported ones
(:class:`~sklearn_clip.ExportedModelHandle`, see
:mod:`sklearn_clip._backends.exported`) are made on demand, so this module
imports neither PyTorch nor a runtime. A handle read back from a pickle comes
from here too, and is checked to hold the weights it was pickled with.
"""

import os
import threading
from collections import OrderedDict

from sklearn_clip._backends.interface import DEFAULT_MODEL, EncoderHandle
from sklearn_clip._models.loading import check_source, hub_snapshot, is_local
from sklearn_clip._options import BACKENDS

__all__ = ["clear_model_cache", "load_model", "model_cache_info"]


_cache = OrderedDict()
_cache_lock = threading.RLock()
_stats = {"loads": 0, "hits": 0}
# Per cache key, over the life of the process (evictions and clears included):
# how often the weights were read, and how often a request found them held.
_key_stats = {}


def _cache_size():
    value = os.environ.get("SKLEARN_CLIP_MODEL_CACHE_SIZE", "4")
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            "SKLEARN_CLIP_MODEL_CACHE_SIZE must be a whole number of models to "
            f"keep loaded (1 or more; default 4); got {value!r}"
        ) from None


def load_model(
    source=DEFAULT_MODEL,
    *,
    backend=None,
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
        A Hugging Face hub id, a local directory written by ``save_pretrained``
        or by :func:`~sklearn_clip.export_model`, or a handle (returned as is).
    backend : {"torch", "onnx", "openvino"}, default=None
        What runs the model. ``"torch"`` is PyTorch. ``"onnx"`` (ONNX Runtime)
        and ``"openvino"`` run an export of the model on the CPU, without
        PyTorch: one found in ``source`` (a directory written by
        :func:`~sklearn_clip.export_model`, or its ``onnx/`` or
        ``openvino/`` folder), else one made now, once, in that folder (or,
        where ``source`` cannot be written to, under ``$SKLEARN_CLIP_DATA``
        or ``~/.cache/sklearn-clip``), which is logged. None means the
        export's own backend for a directory written by ``export_model``,
        else ``"torch"``. The deployment guide gives measured speeds.
    revision : str, default=None
        A hub branch, tag or commit to pin.
    device : {"auto", "cpu", "cuda", "mps"} or str, default="auto"
        ``"auto"`` picks cuda, then mps, then cpu. Exported models run on
        the CPU.
    dtype : {"auto", "float32", "bfloat16", "float16"}, default="auto"
        ``"auto"`` is bfloat16 (or float16) on a GPU, bfloat16 on a CPU with
        native bfloat16 matrix units (AMX, AVX512-BF16), else float32, as the
        hardware reports it; :func:`~sklearn_clip.set_config` forces one
        precision instead. ``handle.dtype`` shows the choice. Whatever it is,
        :meth:`ModelHandle.save_pretrained` writes the checkpoint's own
        precision. An exported model runs at the precision it was exported
        at (float32, or int8 weights).
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
    ModelHandle or ExportedModelHandle
        Shared by every estimator that asks for the same model, backend,
        device and dtype.

    Examples
    --------
    >>> from sklearn_clip import load_model
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> handle = load_model(make_tiny_clip())
    >>> handle.encode_texts(["a red circle", "a blue square"]).shape
    (2, 32)
    """
    if isinstance(source, EncoderHandle):
        return source
    if not isinstance(source, str | os.PathLike):
        raise TypeError(
            "model must be a hub id, a local directory or a ModelHandle; got "
            f"{type(source).__name__}"
        )
    check_source(source)
    local = is_local(source)
    backend = _resolve_backend(backend, source, local)
    device, dtype = _device_and_dtype(backend, device, dtype)
    compile_options = _compile_options(compile, backend)
    limit = max(1, _cache_size())  # checked before any work
    key_source = os.path.realpath(source) if local else str(source)
    key = (key_source, revision, str(device), str(dtype), repr(compile_options))
    key += (backend,)
    with _cache_lock:
        counts = _key_stats.setdefault(key, {"loads": 0, "hits": 0})
        if key in _cache:
            _stats["hits"] += 1
            counts["hits"] += 1
            _cache.move_to_end(key)
            return _cache[key]
        # Loading always happens from a local directory: hub ids are resolved
        # to their cached snapshot first, so no library call can wander onto
        # the network (and retry for a minute) when there is none.
        directory = (
            source if local else hub_snapshot(source, revision, local_files_only)
        )
        handle = _load_directory(directory, backend, device, dtype)
        if not local:
            handle.source, handle.revision = str(source), revision
        handle.compile_options = compile_options
        _stats["loads"] += 1
        counts["loads"] += 1
        _cache[key] = handle
        while len(_cache) > limit:
            _cache.popitem(last=False)
        return handle


def _resolve_backend(backend, source, local):
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None; got {backend!r}")
    if backend is None:
        from sklearn_clip._backends.exported.manifest import read_manifest

        manifest = read_manifest(source) if local else None
        backend = manifest["backend"] if manifest is not None else "torch"
    return backend


def _device_and_dtype(backend, device, dtype):
    if backend == "torch":
        from sklearn_clip._backends.torch.weights import resolve_device, resolve_dtype

        device = resolve_device(device)
        return device, resolve_dtype(dtype, device)
    if str(device) not in ("auto", "cpu"):
        raise ValueError(
            f"the {backend!r} backend runs on the CPU; got device={device!r}. "
            'Use device="cpu" (or "auto"), or backend="torch" for a GPU.'
        )
    if dtype not in ("auto", "float32"):
        raise ValueError(
            "an exported model runs at the precision it was exported at; got "
            f'dtype={dtype!r}. Use dtype="auto", or export with quantize="int8".'
        )
    return "cpu", "auto"


def _load_directory(directory, backend, device, dtype):
    if backend == "torch":
        from sklearn_clip._backends.torch.loading import handle_from_directory

        return handle_from_directory(directory, device, dtype)
    from sklearn_clip._loader.auto_export import load_exported

    return load_exported(directory, backend)


def _compile_options(compile, backend="torch"):
    """``torch.compile`` keyword arguments from ``load_model``'s ``compile``."""
    if compile is False or compile is None:
        return None
    if backend != "torch":
        raise ValueError(f"compile applies to PyTorch models, not to {backend!r}")
    if compile is True:
        return {}
    if isinstance(compile, dict):
        return dict(sorted(compile.items()))
    raise TypeError(
        "compile must be True, False or a dict of torch.compile arguments; "
        f"got {type(compile).__name__}"
    )


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
        ``torch.compile`` options, ``"None"`` for eager), ``backend`` and its own
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
                "backend": backend,
                **_key_stats[key],
            }
            for key in _cache
            for source, revision, device, dtype, compile_options, backend in [key]
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
