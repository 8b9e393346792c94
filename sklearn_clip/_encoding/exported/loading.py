"""Finding, or making once, the export that ``load_model(backend=...)`` runs.

A directory written by :func:`~sklearn_clip.export_model` is read as it is.
For a PyTorch checkpoint, the export lives in its ``onnx/`` or ``openvino/``
folder (the convention sentence-transformers follows): used when it was made
from the weights there now, made (once, and logged) when it is missing or was
made from other weights. A checkpoint that cannot be written to (a read-only
mount, someone else's hub cache) gets its export under
``$SKLEARN_CLIP_DATA/exports`` (default ``~/.cache/sklearn-clip/exports``),
where the package keeps its other downloads and trained demo models.
"""

import atexit
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from sklearn_clip._encoding.exported.handle import ExportedModelHandle
from sklearn_clip._encoding.exported.manifest import (
    MANIFEST_NAME,
    check_files,
    read_manifest,
    source_weight_digests,
)

logger = logging.getLogger("sklearn_clip")

DATA_VARIABLE = "SKLEARN_CLIP_DATA"


def load_exported(directory, backend):
    """The handle of ``directory``'s export for ``backend``, made if needed."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is not None:
        if manifest["backend"] != backend:
            raise ValueError(
                f"{str(directory)!r} holds a {manifest['backend']!r} export, not "
                f"{backend!r}; load it with backend={manifest['backend']!r}, or "
                f"export the original model with backend={backend!r}."
            )
        return _open(directory, manifest)
    target = _export_folder(directory, backend)
    manifest = read_manifest(target)
    if manifest is None or not _made_from_current_weights(directory, manifest):
        _export_once(directory, target, backend, stale=manifest is not None)
        manifest = read_manifest(target)
    return _open(target, manifest)


def _open(directory, manifest):
    check_files(directory, manifest)
    return ExportedModelHandle(directory, manifest)


def writable(directory):
    """Whether this process may write into ``directory``."""
    return os.access(directory, os.W_OK)


def _export_folder(directory, backend):
    inside = directory / backend
    if writable(directory) and (not inside.exists() or writable(inside)):
        return inside
    key = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:24]
    return _cache_root() / "exports" / key / backend


def _cache_root():
    configured = os.environ.get(DATA_VARIABLE)
    return Path(configured or Path.home() / ".cache" / "sklearn-clip")


def _made_from_current_weights(directory, manifest):
    recorded = manifest["source_model"].get("weight_files")
    return bool(recorded) and recorded == source_weight_digests(directory)


def _export_once(directory, target, backend, *, stale):
    try:
        from sklearn_clip._encoding.exported.writer import export_model
    except ImportError as exc:
        raise ImportError(
            f"{str(directory)!r} has no {backend!r} export yet, and making one "
            "needs PyTorch. Export it where PyTorch is installed "
            f"(sklearn-clip export {directory} DIR --backend {backend}) and "
            "load DIR here."
        ) from exc
    why = "made from other weights than those now there" if stale else "missing"
    logger.warning(
        "The %s export of %s was %s: exporting it once into %s (later loads reuse it).",
        backend,
        directory,
        why,
        target,
    )
    export_model(directory, target, backend=backend, overwrite=True)


def exported_from_files(files):
    """The handle of an export carried in a pickle as ``{file name: bytes}``."""
    folder = Path(tempfile.mkdtemp(prefix="sklearn-clip-export-"))
    # The runtime reads the towers lazily from here, for the life of the process.
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for name, data in files.items():
        (folder / Path(name).name).write_bytes(data)
    manifest = read_manifest(folder)
    if manifest is None:
        raise ValueError(f"the pickled export has no {MANIFEST_NAME}")
    return _open(folder, manifest)
