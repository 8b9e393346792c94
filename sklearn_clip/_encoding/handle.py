"""Model loading, the shared model handle, and the process-wide cache.

Every estimator reaches its weights through :func:`load_model`, which keeps one
copy per ``(source, revision, device, dtype)`` in this process: a grid search
over many candidates and folds loads the weights once. The returned
:class:`ModelHandle` is what estimators share; ``sklearn.base.clone`` keeps it
by identity and pickling sends only where it came from.
"""

import copy
import json
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import torch

from sklearn_clip._encoding import encode as _encode
from sklearn_clip._encoding.inputs import as_rows
from sklearn_clip._encoding.preprocess import image_preprocessing
from sklearn_clip._models.families import family_of
from sklearn_clip._models.forward import (
    compile_image_features,
    image_features,
    logit_scale,
    use_fast_activations,
)
from sklearn_clip._models.loading import (
    check_source,
    family_processor,
    hub_snapshot,
    is_local,
    quiet_transformers,
    read_checkpoint,
)
from sklearn_clip._models.precision import auto_dtype, dtype_name
from sklearn_clip._options import DTYPE_NAMES

DEFAULT_MODEL = "openai/clip-vit-base-patch32"

_cache = OrderedDict()
_cache_lock = threading.RLock()
_stats = {"loads": 0, "hits": 0}
# Per cache key, over the life of the process (evictions and clears included):
# how often the weights were read, and how often a request found them held.
_key_stats = {}


def _cache_size():
    return int(os.environ.get("SKLEARN_CLIP_MODEL_CACHE_SIZE", "4"))


def resolve_device(device="auto"):
    """``"auto"`` picks cuda, then mps, then cpu; anything else is checked."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} was asked for, but CUDA is not available"
        )
    return device


def resolve_dtype(dtype, device):
    """``"auto"`` follows :func:`~sklearn_clip._models.precision.auto_dtype`.

    Names are checked.

    That is bfloat16 on GPUs that have it (else float16), and on CPUs with
    native bfloat16 matrix units; float32 elsewhere, unless
    :func:`~sklearn_clip.set_config` forces one precision.
    """
    if dtype is None or dtype == "auto":
        return auto_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"dtype must be 'auto' or one of {DTYPE_NAMES}; got {dtype!r}")
    return getattr(torch, dtype)


class ModelHandle:
    """A loaded CLIP-family model with its tokenizer and image preprocessing.

    Do not build one directly: use :func:`load_model`, or take ``model_`` from
    a fitted :class:`~sklearn_clip.CLIPContrastiveFinetuner`.

    Parameters
    ----------
    model : torch.nn.Module
        A ``transformers`` CLIP-family model; it is put in eval mode.
    tokenizer : transformers tokenizer
        The model's tokenizer.
    image_processor : transformers image processor or dict
        The checkpoint's image processor (as ``AutoImageProcessor`` loads it),
        or its configuration as a dict, which is resolved through
        ``AutoImageProcessor``.
    source, revision : str, default=None
        Where the weights came from; None for weights that live only in memory.
    device, dtype : torch.device and torch.dtype, default=None
        Where the weights are and their type; None reads them from the model.
    compile_options : dict, default=None
        Keyword arguments of ``torch.compile`` for the image forward pass.
    stored_dtype : torch.dtype, default=None
        The precision the checkpoint stores the weights in, where ``model``
        was cast from it; None means ``dtype`` (or ``master``'s precision).
    master : torch.nn.Module, default=None
        The same weights at full precision, where ``model`` is a lower
        precision copy of weights that live only in memory (a fine-tuned
        model's float32 master weights). Saving and fine-tuning use it.

    Attributes
    ----------
    model : torch.nn.Module
        The ``transformers`` model (any of
        :data:`sklearn_clip._models.loading.SUPPORTED_FAMILIES`), in eval mode.
    tokenizer : transformers tokenizer
    image_processor : transformers image processor
        The checkpoint's own, as transformers resolves it.
    image_config : ImageConfig or ProcessorImages
        How images are preprocessed: the fast path for the processors it is
        proven for, else the image processor itself (see
        :mod:`sklearn_clip._encoding.images`).
    source, revision : str or None
        Where the weights came from; None for weights that live only in memory.
    device : torch.device
    dtype : torch.dtype
        The precision the model runs at.
    stored_dtype : torch.dtype
        The precision of the weights as loaded or trained, before any cast
        for inference: what :meth:`save_pretrained` writes and fine-tuning
        starts from.
    compile_options : dict or None
        Keyword arguments of ``torch.compile`` for the image forward pass (see
        :func:`load_model`); None runs it eagerly.

    Examples
    --------
    >>> from sklearn_clip import load_model
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> handle = load_model(make_tiny_clip())
    >>> handle.embedding_dim
    32
    >>> handle.encode_texts(["a red circle", "a blue square"]).shape
    (2, 32)
    """

    def __init__(
        self,
        model,
        tokenizer,
        image_processor,
        *,
        source=None,
        revision=None,
        device=None,
        dtype=None,
        compile_options=None,
        stored_dtype=None,
        master=None,
    ):
        self.model = use_fast_activations(model.eval())
        self.tokenizer = tokenizer
        if isinstance(image_processor, dict):
            image_processor = _image_processor_from_dict(image_processor)
        self.image_processor = image_processor
        self.image_config = image_preprocessing(image_processor)
        self.source = source
        self.revision = revision
        self.device = device or next(model.parameters()).device
        self.dtype = dtype or weights_dtype(model)
        self.compile_options = compile_options
        self._master = master
        if master is not None:
            stored_dtype = weights_dtype(master)
        self.stored_dtype = stored_dtype or self.dtype
        self._directory = None  # where the weights can be read again
        self._compiled_image_features = None
        self._warned = set()
        self._lock = threading.Lock()

    # -- what the model is -------------------------------------------------
    @property
    def family(self):
        """The transformers model type (``"clip"``, ``"siglip2"``, ...)."""
        return self.model.config.model_type

    @property
    def processor_config(self):
        """The image processor's settings, as its config file holds them."""
        return self.image_processor.to_dict()

    @property
    def _facts(self):
        # The family's row of the table: what the properties below decide by.
        return family_of(self.family)

    @property
    def is_sigmoid(self):
        """True for SigLIP-style models, scored with a sigmoid and a bias."""
        return self._facts.sigmoid

    @property
    def embedding_dim(self):
        config = self.model.config
        if getattr(config, "projection_dim", None):
            return int(config.projection_dim)
        text = config.text_config
        return int(getattr(text, "projection_size", None) or text.hidden_size)

    @property
    def context_length(self):
        """Texts are truncated to this many tokens (SigLIP's are padded to it)."""
        facts = self._facts
        if facts.text_length is not None:
            # What transformers' zero-shot pipeline pads SigLIP text to.
            return facts.text_length
        text = self.model.config.text_config
        positions = int(text.max_position_embeddings)
        if facts.position_offset:
            positions -= int(text.pad_token_id) + 1  # XLM-R's position offset
        limit = self.tokenizer.model_max_length
        return min(positions, int(limit)) if limit and limit < 1e6 else positions

    @property
    def pad_to_max_length(self):
        # SigLIP pools the last position, and was trained on sequences padded to
        # the full context; CLIP pools the end token, so padding is free to vary.
        return self._facts.pad_to_max_length

    @property
    def pad_token_id(self):
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id or 0)

    @property
    def logit_scale(self):
        """What cosines are multiplied by: ``exp(logit_scale)`` (ALIGN: ``1 / T``)."""
        return float(logit_scale(self.model).detach().float())

    @property
    def logit_bias(self):
        """The learned bias of SigLIP-style models; None for CLIP."""
        name = self._facts.bias
        if name is None:
            return None
        return float(getattr(self.model, name).detach().float())

    def warn_once(self, key, message):
        """Warn about ``key`` the first time only, for this handle.

        Parameters
        ----------
        key : hashable
            What the warning is about; later calls with it are silent.
        message : str
            The warning's text.
        """
        import warnings

        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, UserWarning, stacklevel=4)

    # -- encoding ----------------------------------------------------------
    def encode_images(
        self,
        images,
        *,
        batch_size=32,
        normalize=True,
        on_error="raise",
        progress=False,
        cache=None,
    ):
        """Embed images into a float32 array of shape ``(n, embedding_dim)``.

        Parameters
        ----------
        images : sequence of images
            Paths, bytes, PIL images or arrays, in any container the
            estimators accept.
        batch_size : int, default=32
            Images per forward pass.
        normalize : bool, default=True
            Scale each embedding to unit length.
        on_error : {"raise", "nan"}, default="raise"
            What an unreadable image does: raise an error naming the row, or
            give a row of NaN.
        progress : bool, default=False
            Show a progress bar.
        cache : EmbeddingCache, default=None
            An embedding cache on disk (what ``cache_dir=`` builds).

        Returns
        -------
        ndarray of shape (n_images, embedding_dim)
            The embeddings, one row per image, in order.
        """
        rows, index = as_rows(images, kind="image")
        embeddings, _ = _encode.encode_rows(
            self,
            rows,
            index,
            modality="image",
            batch_size=batch_size,
            normalize=normalize,
            on_error=on_error,
            progress=progress,
            cache=cache,
        )
        return embeddings

    def encode_texts(
        self, texts, *, batch_size=256, normalize=True, cache=None, order="length"
    ):
        """Embed texts into a float32 array of shape ``(n, embedding_dim)``.

        Parameters
        ----------
        texts : sequence of str
            The texts, in any container the estimators accept.
        batch_size : int, default=256
            Texts per forward pass.
        normalize : bool, default=True
            Scale each embedding to unit length.
        cache : EmbeddingCache, default=None
            An embedding cache on disk (what ``cache_dir=`` builds).
        order : str, default="length"
            How texts are grouped into batches; it does not change the result.

        Returns
        -------
        ndarray of shape (n_texts, embedding_dim)
            The embeddings, one row per text, in order.
        """
        from sklearn_clip._encoding.inputs import check_texts

        rows, index = as_rows(texts, kind="text")
        return _encode.encode_texts(
            self,
            check_texts(rows, index),
            batch_size=batch_size,
            normalize=normalize,
            cache=cache,
            order=order,
        )

    def image_features(self, pixel_values):
        """Projected image embeddings of ready pixels, compiled if asked for.

        Parameters
        ----------
        pixel_values : torch.Tensor of shape (n, 3, height, width)
            Preprocessed pixels on the model's device.

        Returns
        -------
        torch.Tensor of shape (n, embedding_dim)
            The image embeddings, not normalised.
        """
        if self.compile_options is None:
            return image_features(self.model, pixel_values)
        if self._compiled_image_features is None:
            self._compiled_image_features = compile_image_features(
                self.model, self.compile_options
            )
        return self._compiled_image_features(pixel_values)

    # -- persistence -------------------------------------------------------
    def full_precision_model(self):
        """The model at its stored precision (:attr:`stored_dtype`).

        Where the handle runs a lower-precision copy (bfloat16 for inference),
        this is the float32 master copy of trained weights, or the checkpoint
        read again from its directory on the CPU; otherwise the model itself.

        Returns
        -------
        torch.nn.Module
            Not to be modified: it may be the handle's own model.
        """
        if self._master is not None:
            return self._master
        if self.dtype == self.stored_dtype or self._directory is None:
            return self.model
        model, _, _ = read_checkpoint(
            self._directory, torch.device("cpu"), self.stored_dtype
        )
        # The same activations as the handle's own model, so that training
        # from here equals training from a float32 handle bit for bit.
        return use_fast_activations(model.eval())

    def save_pretrained(self, path):
        """Write safetensors weights and the family's processor to ``path``.

        The weights are written at their stored precision (a float32
        checkpoint loaded as bfloat16 for inference is saved as float32), so
        saving never loses precision.

        The family's processor saves itself (``processor_config.json`` and the
        tokenizer files in transformers 5); the image processor's own
        ``preprocessor_config.json`` is written too, which transformers 4
        reads.

        Parameters
        ----------
        path : str or pathlib.Path
            The directory; it is created if needed.

        Returns
        -------
        pathlib.Path
            The directory, readable by :func:`load_model` and ``transformers``.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        processor = family_processor(self.family, self.image_processor, self.tokenizer)
        with quiet_transformers():
            self.full_precision_model().save_pretrained(path, safe_serialization=True)
            processor.save_pretrained(path)
            self.image_processor.save_pretrained(path)
        return path

    def with_model(self, model, *, source=None, revision=None):
        """Return a new handle around ``model`` with this tokenizer and preprocessing.

        Parameters
        ----------
        model : torch.nn.Module
            A model of the same architecture (e.g. fine-tuned weights), at
            any precision. It runs on this handle's device and dtype; where
            its own precision differs (float32 trained weights for a bfloat16
            handle), it is kept on the CPU as the master copy that saving and
            further fine-tuning use, and a converted copy runs.
        source, revision : str, default=None
            Where its weights came from; None for weights only in memory.

        Returns
        -------
        ModelHandle
            The new handle, on this handle's device and dtype.
        """
        run, master = _at_precision(model, self.device, self.dtype)
        return ModelHandle(
            run,
            self.tokenizer,
            self.image_processor,
            source=source,
            revision=revision,
            device=self.device,
            dtype=self.dtype,
            compile_options=self.compile_options,
            master=master,
        )

    def __sklearn_clone__(self):
        # A handle is a shared resource, not a parameter value to copy: cloning
        # an estimator must not duplicate the weights.
        return self

    def __reduce__(self):
        if self.source is not None:
            return (
                _load_reference,
                (
                    self.source,
                    self.revision,
                    self.device.type,
                    dtype_name(self.dtype),
                    self.compile_options,
                ),
            )
        return (
            _handle_from_files,
            (self.to_files(), dtype_name(self.dtype), self.device.type),
        )

    def to_files(self):
        """Return the saved directory as ``{file name: bytes}`` (safetensors inside).

        Returns
        -------
        dict of str to bytes
            What :meth:`save_pretrained` writes, file by file.
        """
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}

    def __repr__(self):
        name = self.source if self.source is not None else "in-memory weights"
        return (
            f"ModelHandle({name!r}, {type(self.model).__name__}, "
            f"device={str(self.device)!r}, dtype={str(self.dtype)!r})"
        )


def _image_processor_from_dict(settings):
    """An image processor from its settings, resolved as transformers resolves
    a saved one (the Pillow variant where torchvision is absent)."""
    from transformers import AutoImageProcessor

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "preprocessor_config.json").write_text(
            json.dumps(dict(settings), default=int)
        )
        return AutoImageProcessor.from_pretrained(tmp, local_files_only=True)


def _load_reference(source, revision, device, dtype, compile=None):
    # Weights pickled on a GPU machine may be read where there is none.
    if device != "cpu" and resolve_device("auto").type != device:
        device, dtype = "auto", "auto"
    return load_model(
        source, revision=revision, device=device, dtype=dtype, compile=compile
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
    model, master = _at_precision(stored, device, resolve_dtype(dtype, device))
    return ModelHandle(model, tokenizer, processor, master=master)


def _at_precision(model, device, dtype):
    """``(model to run, master copy or None)`` for running ``model`` at ``dtype``.

    ``nn.Module.to`` converts in place, so a lower-precision copy is made from
    the master, which stays on the CPU and is never converted.
    """
    if weights_dtype(model) == dtype:
        return model.to(device), None
    master = model.to("cpu")
    return cast_weights(copy.deepcopy(master), device, dtype), master


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


def _load_directory(source, device, dtype):
    model, tokenizer, processor = read_checkpoint(source, device, None)
    stored_dtype = weights_dtype(model)
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


def as_numpy_state(model):
    """A CPU numpy copy of a model's weights (for comparisons in tests)."""
    return {
        k: v.detach().cpu().float().numpy().copy()
        for k, v in model.state_dict().items()
    }
