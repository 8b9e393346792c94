"""Writing an export for ONNX Runtime or OpenVINO, given a PyTorch handle.

The handle traces its two towers to ONNX graphs; OpenVINO's copy is
converted from them. ``quantize="int8"`` stores the matrix weights in 8
bits: ONNX Runtime's dynamic quantization (weights per output channel,
activations per batch), or NNCF's weight compression for OpenVINO.
Everything is written into a staging folder beside the target and swapped in
at the end (:func:`sklearn_clip._folders.replaced_folder`), so an interrupted
export leaves nothing half-written under that name. Nothing here imports
PyTorch: the handle brings it.
"""

import contextlib
import functools
import io
import logging
import os
import warnings
from importlib import metadata
from pathlib import Path

from tqdm.auto import tqdm

from sklearn_clip._backends.exported.manifest import (
    MANIFEST_NAME,
    source_weight_digests,
    write_manifest,
)
from sklearn_clip._backends.exported.runtime import TOWER_FILES
from sklearn_clip._encoding.preprocess import ImageConfig
from sklearn_clip._files import check_replaceable
from sklearn_clip._folders import folder_marker_recogniser, replaced_folder
from sklearn_clip._models.families import EXPORT_FAMILIES
from sklearn_clip._options import EXPORT_BACKENDS, QUANTIZATIONS

# What the export needs besides PyTorch, by backend.
_EXPORT_PACKAGES = {
    "onnx": ("onnx", "onnxscript", "onnxruntime"),
    "openvino": ("onnx", "onnxscript", "openvino", "nncf"),
}


#: Whether a folder holds an export this package wrote (it has its record):
#: the only folders, besides empty ones, that an export replaces.
is_export_folder = folder_marker_recogniser(MANIFEST_NAME)


def export_handle(
    handle, path, *, backend, quantize, overwrite, sources=(), progress=False
):
    """Export ``handle`` to ``path`` by the output rule, swapped in whole.

    ``sources`` are the folders the model was read from, which ``path`` must
    never be or hold (:func:`check_export_path`, checked again just before
    the new folder is swapped in).
    """
    check = functools.partial(
        check_export_path,
        path,
        overwrite=overwrite,
        sources=(*sources, handle.folder),
    )
    path = check()
    with replaced_folder(path, check=check) as staging:
        write_export(handle, staging, backend, quantize, progress=progress)
    return path


def check_export_path(path, *, overwrite=False, sources=()):
    """Refuse an export's ``path`` by the package's output rule, before any work.

    ``path`` may be new, an empty folder, or (with ``overwrite``) a previous
    export (it holds ``sklearn_clip_export.json``); never the current
    directory or a folder holding it, nor a folder that is or holds one of
    ``sources`` (a folder inside the source, such as a checkpoint's
    ``onnx/``, is allowed). See :func:`sklearn_clip._files.check_replaceable`.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    return check_replaceable(
        path,
        overwrite=overwrite,
        sources=sources,
        recognise=is_export_folder,
        kind=f"an sklearn-clip export (it has no {MANIFEST_NAME})",
    )


def check_export_options(backend, quantize):
    """Refuse unknown options, and a backend whose packages are missing."""
    if backend not in EXPORT_BACKENDS:
        raise ValueError(f"backend must be one of {EXPORT_BACKENDS}; got {backend!r}")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}; got {quantize!r}")
    for package in _EXPORT_PACKAGES[backend]:
        try:
            metadata.version(package)
        except metadata.PackageNotFoundError:
            raise ImportError(
                f"exporting for {backend!r} needs the {package!r} package: "
                f"pip install {package} (the package's 'export' extra installs "
                "everything exporting uses)"
            ) from None


def check_exportable(handle):
    """Refuse a model of a family that cannot be exported, naming those that can."""
    if handle.family not in EXPORT_FAMILIES or not isinstance(
        handle.image_config, ImageConfig
    ):
        raise ValueError(
            f"a {handle.family!r} model cannot be exported; sklearn-clip exports "
            f"the model types {', '.join(EXPORT_FAMILIES)}."
        )


def write_export(handle, folder, backend, quantize, progress=False):
    """Write ``handle``'s export for ``backend`` into the existing ``folder``.

    ``handle`` is a float32 PyTorch handle on the CPU; it traces its towers
    (``ModelHandle._export_onnx_towers``), which are then converted or
    quantized here, beside the tokenizer and image-processor files and the
    record of it all. ``progress`` shows a bar over these steps, which take
    minutes for a full-size model.
    """
    folder = Path(folder)
    steps = _export_steps(handle, folder, backend, quantize)
    bar = tqdm(total=len(steps), desc="exporting", unit="step", disable=not progress)
    with _quiet_exporter(), bar:
        for description, step in steps:
            bar.set_postfix_str(description)
            step()
            bar.update()
    handle.tokenizer.save_pretrained(folder)
    handle.image_processor.save_pretrained(folder)
    write_manifest(folder, _manifest(handle, backend, quantize))


def _export_steps(handle, folder, backend, quantize):
    """``[(description, function)]``: the long steps of an export, in order."""
    paths = {kind: folder / name for kind, name in TOWER_FILES["onnx"].items()}
    steps = [
        (
            f"tracing the {kind} tower",
            functools.partial(handle._export_onnx_towers, {kind: path}),
        )
        for kind, path in paths.items()
    ]
    if backend == "openvino":
        steps.append(
            (
                "converting for OpenVINO",
                functools.partial(_convert_to_openvino, folder, quantize),
            )
        )
    elif quantize == "int8":
        steps.append(("quantizing to int8", functools.partial(_quantize_onnx, folder)))
    return steps


@contextlib.contextmanager
def _quiet_exporter():
    # The exporter and NNCF print their progress, and the exporter logs a note
    # per missing torchvision operator and warns about its own internals: none
    # of it says anything about this export.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore", (UserWarning, FutureWarning))
            yield
    finally:
        logger.setLevel(level)


def _quantize_onnx(folder):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    for name in TOWER_FILES["onnx"].values():
        source = folder / name
        # Shapes inferred and the graph simplified first, as ONNX Runtime's
        # quantization guide asks: more of the products are then quantized.
        prepared = folder / f"{name}.prepared"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        target = folder / f"{name}.int8"
        # 7-bit weights (reduce_range): on CPUs without 8-bit dot-product
        # instructions (AVX2, AVX-512 without VNNI) ONNX Runtime's 8-bit
        # products can saturate. Measured on the docs' demo model: top-1
        # agreement with float32 0.978 with it, 0.958 without, at the same
        # speed (benchmarks/backends_cpu.py).
        quantize_dynamic(
            prepared,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
        )
        prepared.unlink()
        os.replace(target, source)


def _convert_to_openvino(folder, quantize):
    import openvino

    for kind, name in TOWER_FILES["openvino"].items():
        onnx_path = folder / TOWER_FILES["onnx"][kind]
        converted = openvino.convert_model(str(onnx_path))
        if quantize == "int8":
            import nncf

            converted = nncf.compress_weights(
                converted, mode=nncf.CompressWeightsMode.INT8_ASYM
            )
        openvino.save_model(converted, str(folder / name), compress_to_fp16=False)
        onnx_path.unlink()


def _manifest(handle, backend, quantize):
    packages = ("sklearn-clip", "torch", "transformers", *_EXPORT_PACKAGES[backend])
    return {
        "backend": backend,
        "precision": quantize or "float32",
        "family": handle.family,
        "is_sigmoid": handle.is_sigmoid,
        "embedding_dim": handle.embedding_dim,
        "logit_scale": handle.logit_scale,
        "logit_bias": handle.logit_bias,
        "context_length": handle.context_length,
        "pad_to_max_length": handle.pad_to_max_length,
        "pad_token_id": handle.pad_token_id,
        "source_model": {
            "source": handle.source,
            "revision": handle.revision,
            "fingerprint": handle.fingerprint,
            "weight_files": source_weight_digests(handle.folder),
        },
        "versions": {name: _version(name) for name in packages},
    }


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
