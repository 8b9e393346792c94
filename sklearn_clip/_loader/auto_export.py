"""Finding, or making once, the export that ``load_model(backend=...)`` runs.

A directory written by :func:`~sklearn_clip.export_model` is read as it is.
For a PyTorch checkpoint, the export lives in its ``onnx/`` or ``openvino/``
folder (the convention sentence-transformers follows): used when it was made
from the files there now (weights, config, tokenizer and preprocessing), made
(once, and logged) when it is missing or was made from other files. A
checkpoint that cannot be written to (a read-only mount, someone else's hub
cache), or whose ``onnx/`` or ``openvino/`` folder holds files sklearn-clip
did not write (Optimum's and transformers.js' layout), gets its export under
``$SKLEARN_CLIP_DATA/exports`` (default ``~/.cache/sklearn-clip/exports``),
where the package keeps its other downloads and trained demo models: a
folder the package did not write is never touched.
"""

import atexit
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from sklearn_clip._backends.exported.handle import ExportedModelHandle
from sklearn_clip._backends.exported.manifest import (
    MANIFEST_NAME,
    ManifestVersionError,
    check_files,
    read_manifest,
    source_weight_digests,
)
from sklearn_clip._backends.exported.writing import (
    check_export_options,
    check_exportable,
    export_handle,
    is_export_folder,
)
from sklearn_clip._files import is_empty_folder, is_plain_file_name

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
    target, foreign = _export_folder(directory, backend)
    manifest, why = _current_export(directory, target, backend)
    if why is not None:
        if foreign is not None:
            why += (
                f"; {foreign} holds files not written by sklearn-clip, which are "
                "left as they are"
            )
        _export_once(directory, target, backend, why)
        manifest = read_manifest(target)
    return _open(target, manifest)


def _open(directory, manifest):
    check_files(directory, manifest)
    return ExportedModelHandle(directory, manifest)


def writable(directory):
    """Whether this process may write into ``directory``."""
    return os.access(directory, os.W_OK)


def _export_folder(directory, backend):
    """``(folder of the export, foreign folder or None)``.

    The checkpoint's own folder where it is ours (or new, or empty) and can
    be written; else one under the package's data folder.
    """
    inside = directory / backend
    if not _ours_or_new(inside):
        foreign = inside
    elif writable(directory) and (not inside.exists() or writable(inside)):
        return inside, None
    else:
        foreign = None
    key = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:24]
    return _cache_root() / "exports" / key / backend, foreign


def _ours_or_new(folder):
    # What the writer itself would replace (export_handle refuses the rest):
    # Optimum and transformers.js ship onnx/ folders of their own.
    return (
        not os.path.lexists(folder)
        or is_export_folder(folder)
        or is_empty_folder(folder)
    )


def _cache_root():
    configured = os.environ.get(DATA_VARIABLE)
    return Path(configured or Path.home() / ".cache" / "sklearn-clip")


def _current_export(directory, target, backend):
    """``(manifest, None)`` of an export made from the files there now, else
    ``(None, why it must be made)``."""
    try:
        manifest = read_manifest(target)
    except ManifestVersionError:
        return None, "written by another version of sklearn-clip"
    if manifest is None:
        return None, "missing"
    if manifest["backend"] != backend:
        return None, f"a {manifest['backend']!r} export"
    recorded = manifest["source_model"].get("weight_files")
    if not recorded or recorded != source_weight_digests(directory):
        return None, (
            "made from other weights or preprocessing files than those now there"
        )
    return manifest, None


def _export_once(directory, target, backend, why):
    try:
        from sklearn_clip._backends.torch.loading import float32_cpu_handle
    except ImportError as exc:
        raise ImportError(
            f"{str(directory)!r} has no {backend!r} export yet, and making one "
            "needs PyTorch. Export it where PyTorch is installed "
            f"(sklearn-clip export {directory} DIR --backend {backend}) and "
            "load DIR here."
        ) from exc
    logger.warning(
        "The %s export of %s was %s: exporting it once into %s (later loads reuse it).",
        backend,
        directory,
        why,
        target,
    )
    check_export_options(backend, None)
    handle = float32_cpu_handle(directory)
    check_exportable(handle)
    export_handle(
        handle, target, backend=backend, quantize=None, overwrite=True, sources=()
    )


def exported_from_files(files):
    """The handle of an export carried in a pickle as ``{file name: bytes}``."""
    folder = Path(tempfile.mkdtemp(prefix="sklearn-clip-export-"))
    # The runtime reads the towers lazily from here, for the life of the process.
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for name, data in files.items():
        if not is_plain_file_name(name):
            raise ValueError(
                f"the pickled export holds a file named {name!r}, which is not a "
                "plain file name; pickle the estimator again from a good export."
            )
        (folder / name).write_bytes(data)
    manifest = read_manifest(folder)
    if manifest is None:
        raise ValueError(f"the pickled export has no {MANIFEST_NAME}")
    return _open(folder, manifest)
