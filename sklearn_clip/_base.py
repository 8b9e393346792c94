"""What the three estimators share: parameters, tags, the model, pickling.

Each estimator inherits :class:`CLIPEstimatorBase` after its scikit-learn mixin
(mixins go to the left of ``BaseEstimator``). ``__init__`` only stores; the
model is resolved in ``fit`` by :meth:`CLIPEstimatorBase._get_model`, an
explicit method rather than a property because notebook HTML reprs evaluate
properties and would load the weights.
"""

import inspect
import os
from numbers import Integral
from pathlib import Path

from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import validate_data

from sklearn_clip._backends.interface import EncoderHandle
from sklearn_clip._encoding.cache import make_cache
from sklearn_clip._encoding.clips import frame_columns, pool
from sklearn_clip._encoding.encode import (
    encode_frames,
    encode_rows,
    failure_records,
    report_failures,
)
from sklearn_clip._encoding.inputs import as_rows
from sklearn_clip._encoding.prefetch import usable_cores
from sklearn_clip._loader.pickling import check_same_model, handle_from_files
from sklearn_clip._loader.registry import load_model
from sklearn_clip._options import CACHE_DTYPES, DTYPE_NAMES, ON_ERROR_OPTIONS
from sklearn_clip._persistence import check_estimator_state

# Where the documentation is published (also in pyproject.toml's project URLs).
DOCS_URL = "https://sklearn-clip.readthedocs.io/en/latest/"

# Parameter descriptions written once and put into each estimator's docstring by
# `fill_doc`, so the three estimators document shared parameters identically.
SHARED_PARAMETER_DOCS = {
    "model": """model : str, os.PathLike or ModelHandle, default="openai/clip-vit-base-patch32"
        A Hugging Face hub id, a local directory written by ``save_pretrained``,
        or a handle from :func:`~sklearn_clip.load_model` or a fitted
        :class:`~sklearn_clip.CLIPContrastiveFinetuner` (``model_``). Nothing is
        loaded before ``fit``; every estimator asking for the same model shares
        one copy of the weights per process.""",
    "revision": """revision : str, default=None
        Hub branch, tag or commit to pin when ``model`` is a hub id.""",
    "device": """device : {"auto", "cpu", "cuda", "mps"} or str, default="auto"
        Where the model runs; ``"auto"`` picks cuda, then mps, then cpu.""",
    "dtype": """dtype : {"auto", "float32", "bfloat16", "float16"}, default="auto"
        Weights' precision; ``"auto"`` is bfloat16 or float16 on a GPU,
        bfloat16 on a CPU with native bfloat16 matrix units (AMX,
        AVX512-BF16), else float32: decided from what the hardware reports,
        the same in every process of a machine. ``dtype_`` records the
        choice, and :func:`~sklearn_clip.set_config` (or the
        ``SKLEARN_CLIP_AUTO_DTYPE`` environment variable, for every thread)
        forces one precision for every ``"auto"`` in the calling thread, as
        scikit-learn's settings are per thread. Outputs are always float32.""",
    "batch_size": """batch_size : int or "auto", default=32
        Rows encoded per forward pass. Outputs do not depend on it (beyond
        floating-point rounding). ``"auto"`` starts small on a GPU and doubles
        the batch while throughput improves, and halves it on an out-of-memory
        error, retrying the same rows; on a CPU it is a fixed size that suits
        CPUs.""",
    "cache_dir": """cache_dir : str or os.PathLike, default=None
        A folder for an on-disk cache of embeddings; None for no cache. Rows
        whose embedding is stored there are read instead of encoded, and new
        ones are stored. Entries are keyed by the content of the weights (so
        fine-tuned weights never reuse their base model's entries), the
        preprocessing, ``normalize`` and the input's content (a file's bytes,
        not its path), so an entry cannot go stale. Safe to share between
        threads, processes and machines; delete the folder to empty it.""",
    "cache_dtype": """cache_dtype : {"float32", "float16"}, default="float32"
        How cached embeddings are stored. ``"float16"`` halves the disk used;
        the outputs of every call with the cache are then rounded to float16
        (and returned as float32), whether read or computed, so that a first
        and a second call agree exactly.""",
    "n_jobs": """n_jobs : int, default=None
        Threads that decode and resize images while the model runs. None uses
        one per core this process may run on (``os.sched_getaffinity``, which
        honours container and ``taskset`` limits), at most 32; ``-1`` means
        every such core and ``-2`` all but one, as in joblib. Give fewer where
        other work shares the cores.""",
    "on_error": """on_error : {"raise", "nan"}, default="raise"
        What an unreadable image does: ``"raise"`` raises an
        :class:`~sklearn_clip.exceptions.ImageInputError` naming the row, its
        index label and its path; ``"nan"`` gives that row NaN outputs and
        warns once per call with an
        :class:`~sklearn_clip.exceptions.InputErrorWarning` whose ``errors``
        lists the rows that failed (``fit`` also keeps those of its own rows
        in ``input_errors_``, where it reads images). Only image-decoding
        errors are caught, and if every row fails the call raises.""",
    "store_weights_in_pickle": """store_weights_in_pickle : bool, default=False
        Whether pickling keeps the weights. By default a pickle holds only where
        the model came from and reloads it on first use; set True to deploy
        where that source is not available.""",
    "progress": """progress : bool, default=False
        Show a progress bar over batches.""",
    "video": """video : dict, default=None
        How video rows (paths ending in ``.mp4``, ``.mkv``, ``.webm``,
        ``.mov``, ... or a video's bytes) are read, with PyAV
        (the ``video`` extra: ``pip install av``): ``{"frames": n}`` frames
        spread over each clip (at the middle of ``n`` equal parts; 8 when
        None), or ``{"fps": r}`` about ``r`` frames per second, and
        ``"pooling"``: ``"mean"`` (the default) or ``"max"`` of the frame
        embeddings, scaled to unit length as image embeddings are. Each frame
        is decoded, cached and checked as an image; see the video guide.""",
}


def fill_doc(cls):
    """Replace ``{model}``-style markers in a docstring with the shared text."""
    doc = cls.__doc__
    for name, text in SHARED_PARAMETER_DOCS.items():
        doc = doc.replace(f"    {{{name}}}\n", f"    {text}\n")
    cls.__doc__ = doc
    return cls


# The parameters of the estimators that encode (not the fine-tuner's).
ENCODING_PARAMETER_CONSTRAINTS = {
    "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
    "cache_dir": [str, os.PathLike, None],
    "cache_dtype": [StrOptions(set(CACHE_DTYPES))],
    "video": [dict, None],
    "n_jobs": [
        Interval(Integral, 1, None, closed="left"),
        Interval(Integral, None, -1, closed="right"),
        None,
    ],
}


def decoding_threads(n_jobs):
    """The decoding threads ``n_jobs`` asks for; negative counts as joblib's.

    >>> from sklearn_clip._base import decoding_threads
    >>> decoding_threads(3), decoding_threads(None)
    (3, None)
    >>> decoding_threads(-1) == usable_cores()
    True
    """
    if n_jobs is None or n_jobs > 0:
        return n_jobs
    return max(1, usable_cores() + 1 + n_jobs)


class CLIPEstimatorBase(BaseEstimator):
    """Shared machinery; not an estimator on its own."""

    # The HTML repr's "?" links to the estimator's page of the API reference.
    _doc_link_module = "sklearn_clip"
    _doc_link_template = DOCS_URL + "api/generated/sklearn_clip.{estimator_name}.html"

    _parameter_constraints = {
        "model": [str, os.PathLike, EncoderHandle],
        "revision": [str, None],
        "device": [str, None],
        "dtype": [StrOptions({"auto", *DTYPE_NAMES})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "on_error": [StrOptions(set(ON_ERROR_OPTIONS))],
        "store_weights_in_pickle": ["boolean"],
        "progress": ["boolean"],
    }

    def _get_model(self, reset=False):
        """The model handle, loaded (or taken from the process cache) on first use.

        ``fit`` passes ``reset=True`` so that a changed ``model`` parameter is
        honoured, and records the weights' identity in ``model_fingerprint_``;
        other methods reuse the handle resolved in ``fit``, or, in an
        estimator read back from a pickle, load it again and refuse weights
        other than those it was fitted with.
        """
        handle = None if reset else self.__dict__.get("_handle")
        if handle is None:
            files = self.__dict__.pop("_pickled_model_files", None)
            if files is not None:
                handle = handle_from_files(files, self.dtype)
            else:
                if not reset:
                    _check_fitted_folder_is_here(self.model)
                handle = load_model(
                    self.model,
                    revision=self.revision,
                    device=self.device or "auto",
                    dtype=self.dtype,
                )
            if not reset:
                fitted = self.__dict__.get("model_fingerprint_")
                check_same_model(handle, fitted, f"this {type(self).__name__}")
            self._handle = handle
        if reset:
            self.dtype_ = handle.precision_name
            self.model_fingerprint_ = handle.fingerprint
        return handle

    def _encode(self, X, *, modality, normalize=True):
        """Embed ``X`` with the fitted model: the estimators' one encoding path.

        Writes nothing on the estimator, as scikit-learn keeps state to
        ``fit``: under ``on_error="nan"`` the rows that failed travel with the
        call's :class:`~sklearn_clip.exceptions.InputErrorWarning`.
        """
        return self._encode_rows(X, modality=modality, normalize=normalize)[0]

    def _encode_rows(self, X, *, modality, normalize=True, report=True):
        """``(embeddings, records of the rows that failed)`` of ``X``.

        Uses the shared encoding parameters (``batch_size``, ``on_error``,
        ``progress``, ``cache_dir``, ``cache_dtype``, ``n_jobs``); ``fit``
        keeps the records of its own rows in ``input_errors_``. With
        ``report`` (the estimators' methods), failed rows are reported as
        :func:`~sklearn_clip._encoding.encode.report_failures` says; without,
        the caller takes their records as they are.
        """
        rows, index = self._validate_rows(X, kind=modality, reset=False)
        embeddings, failures = encode_rows(
            self._get_model(),
            rows,
            index,
            modality=modality,
            normalize=normalize,
            **self._encoding_options(),
        )
        if report:
            return embeddings, report_failures(failures, rows, index)
        return embeddings, failure_records(failures, rows, index)

    def _encoding_options(self):
        """The shared encoding parameters, as the encoding functions take them."""
        return {
            "batch_size": self.batch_size,
            "on_error": self.on_error,
            "progress": self.progress,
            "cache": make_cache(self.cache_dir, self.cache_dtype),
            "n_workers": decoding_threads(self.n_jobs),
            "video": getattr(self, "video", None),  # absent from old pickles
        }

    def _encode_frames(self, X, *, normalize=True):
        """The frames of ``X``'s rows (videos and images): a dict of columns.

        ``position`` and ``row`` (the input row's index label), ``frame``,
        ``time`` (seconds; NaN for still images), ``embedding`` (2-D); and
        ``pooled`` (one embedding per input row), ``has_video`` and
        ``errors`` (the rows that failed, reported as :meth:`_encode_rows`
        reports them).
        """
        rows, index = self._validate_rows(X, kind="image", reset=False)
        options = self._encoding_options()
        plan, embeddings, failures = encode_frames(
            self._get_model(), rows, index, normalize=normalize, **options
        )
        pooled, failed = pool(
            plan, embeddings, failures, normalize=normalize, video=options["video"]
        )
        return {
            **frame_columns(plan, embeddings, index),
            "pooled": pooled,
            "has_video": plan.has_video,
            "errors": report_failures(failed, rows, index),
        }

    def _forget_columns(self):
        """``fit(None)`` saw no columns: drop what an earlier fit recorded."""
        for name in ("n_features_in_", "feature_names_in_"):
            self.__dict__.pop(name, None)

    def _validate_rows(self, X, *, kind, reset):
        """Flatten ``X`` to ``(rows, index)``; record (fit) or check its column.

        Only a DataFrame has a column name and a column count, so only a
        DataFrame sets ``feature_names_in_`` and ``n_features_in_``: for a
        4-D image batch the "second dimension" is the image height.
        """
        rows, index = as_rows(X, kind=kind)
        is_frame = hasattr(X, "columns") and hasattr(X, "shape")
        validate_data(self, X, skip_check_array=True, ensure_2d=is_frame, reset=reset)
        if reset and not is_frame:
            self.__dict__.pop("n_features_in_", None)
        return rows, index

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Rows are images (paths, bytes, arrays) or strings, not numeric
        # features: say so, as CountVectorizer and PatchExtractor do.
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.input_tags.three_d_array = True
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = []
        return tags

    def __getstate__(self):
        # A copy: ``object.__getstate__`` returns the live ``__dict__``, and
        # pickling must leave the estimator as it was (its loaded model kept).
        state = dict(super().__getstate__())
        handle = state.pop("_handle", None)
        if self.store_weights_in_pickle and "_pickled_model_files" not in state:
            if handle is None and "model_fingerprint_" in state:
                handle = self._get_model()  # fitted, its model not loaded yet
            if handle is not None:
                state["_pickled_model_files"] = handle._to_files()
        return state

    def __setstate__(self, state):
        # pickle, joblib and skops all restore through here: what a file holds
        # is checked before it becomes this estimator's parameters.
        check_estimator_state(type(self), state)
        # Parameters added since the file was written (``video``) take
        # their defaults, so an older pickle's repr and methods still work.
        parameters = inspect.signature(type(self).__init__).parameters
        for name in self._get_param_names():
            default = parameters[name].default
            if name not in state and default is not inspect.Parameter.empty:
                state[name] = default
        super().__setstate__(state)


def _check_fitted_folder_is_here(model):
    """A fitted estimator's model folder (say, one read from a pickle made on
    another machine) must be where it was: say so, and how to fix it."""
    if not isinstance(model, str | os.PathLike):
        return
    path = Path(model)
    if path.is_absolute() and not path.exists():
        raise FileNotFoundError(
            f"this estimator was fitted with the model folder {str(path)!r}, which "
            "is not here; a pickle holds the folder's path, not its weights. Copy "
            "the folder to that path, point the estimator to where it is now "
            "(set_params(model=...)), or pickle it with "
            "store_weights_in_pickle=True so the file carries the weights."
        )
