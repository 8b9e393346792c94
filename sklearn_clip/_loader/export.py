"""Exporting a model for ONNX Runtime or OpenVINO: :func:`export_model`.

The model (a hub id, a folder or a handle) is loaded at float32 on the CPU
through :func:`~sklearn_clip.load_model`, then written by the exported
backend (:mod:`sklearn_clip._backends.exported.writing`), which the handle
traces its towers for. The output rule is checked before the model is loaded.
"""

import os

from sklearn_clip._backends.exported.writing import (
    check_export_options,
    check_export_path,
    check_exportable,
    export_handle,
)
from sklearn_clip._backends.interface import EncoderHandle
from sklearn_clip._loader.registry import load_model


def export_model(
    model,
    path,
    *,
    backend="onnx",
    quantize=None,
    revision=None,
    overwrite=False,
    progress=False,
):
    """Export a model's image and text towers for ONNX Runtime or OpenVINO.

    The directory written holds each tower, the tokenizer and image
    processor files (as transformers writes them), and
    ``sklearn_clip_export.json``: the backend, precision, the source model's
    identity (path or hub id, revision, weights fingerprint), the library
    versions used, and a SHA-256 of every file. :func:`load_model` reads it,
    in a process with or without PyTorch, and every inference estimator takes
    it as its ``model``.

    Parameters
    ----------
    model : str, os.PathLike or ModelHandle
        A hub id, a local directory, or a handle (a fine-tuned model's
        ``model_`` included). It is exported at float32, whatever precision
        it runs at.
    path : str or os.PathLike
        The directory to write.
    backend : {"onnx", "openvino"}, default="onnx"
        The runtime the export is for.
    quantize : {None, "int8"}, default=None
        ``"int8"`` stores the matrix weights in 8 bits: ONNX Runtime's dynamic
        quantization, or NNCF's weight compression for OpenVINO. Check what
        it costs in agreement and gains in speed on your CPU (the deployment
        guide shows how).
    revision : str, default=None
        The hub revision, where ``model`` is a hub id.
    overwrite : bool, default=False
        Replace ``path`` if it is an earlier export (it holds
        ``sklearn_clip_export.json``). Whatever ``overwrite``, an empty
        folder may be written, and nothing else is ever replaced: not a
        folder the package did not write, the model's own folder (or one
        holding it), nor the current directory (or one holding it). These
        checks run before the model is loaded.
    progress : bool, default=False
        Show a progress bar over the export's steps (tracing each tower,
        converting or quantizing them), which take minutes for a full-size
        model.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    FileExistsError
        ``path`` exists (and is not an empty folder) and ``overwrite`` is
        False.
    ValueError
        ``path`` must never be replaced (see ``overwrite``); the message names
        it and says what to do instead.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn_clip import export_model
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> path = export_model(make_tiny_clip(), tempfile.mkdtemp() + "/export")
    >>> sorted(p.name for p in path.iterdir() if p.suffix == ".onnx")
    ['image_model.onnx', 'text_model.onnx']
    """
    check_export_options(backend, quantize)
    check_export_path(path, overwrite=overwrite, sources=_sources(model))
    handle = _float32_handle(model, revision)  # after the path's check
    check_exportable(handle)
    return export_handle(
        handle,
        path,
        backend=backend,
        quantize=quantize,
        overwrite=overwrite,
        sources=_sources(model),
        progress=progress,
    )


def _sources(model):
    """The folders ``model`` is read from: a path, or a handle's folder."""
    if isinstance(model, (str, os.PathLike)):
        return (model,)
    return (model.folder, model.source)


def _float32_handle(model, revision):
    """A float32 PyTorch handle on the CPU of ``model``, which is left as it is."""
    if not isinstance(model, EncoderHandle):
        return load_model(
            model, backend="torch", revision=revision, device="cpu", dtype="float32"
        )
    if not model.trainable:
        raise ValueError(
            f"{model!r} is an export already; export the PyTorch model it came "
            f"from ({model.source_model['source']!r})."
        )
    return model._float32_cpu_copy()
