"""Writing an export: a model's two towers for ONNX Runtime or OpenVINO.

Each tower is traced by PyTorch's ONNX exporter through the package's own
forward passes (:mod:`sklearn_clip._models.forward`), so the export computes
what the PyTorch path computes; OpenVINO's copy is converted from that ONNX
graph. ``quantize="int8"`` stores the matrix weights in 8 bits: ONNX Runtime's
dynamic quantization (weights per output channel, activations per batch), or
NNCF's weight compression for OpenVINO. Everything is written into a
staging folder beside ``path`` and swapped in for it at the end
(:func:`sklearn_clip._files.replaced_folder`), so an interrupted export leaves
nothing half-written under that name, and staging folders of killed exports
are removed by the next one.
"""

import contextlib
import copy
import functools
import io
import logging
import os
import warnings
from importlib import metadata

import torch

from sklearn_clip._encoding.exported.manifest import (
    MANIFEST_NAME,
    source_weight_digests,
    write_manifest,
)
from sklearn_clip._encoding.exported.runtime import TOWER_FILES
from sklearn_clip._encoding.preprocess import ImageConfig
from sklearn_clip._encoding.tokens import token_ids
from sklearn_clip._files import check_replaceable
from sklearn_clip._folders import folder_marker_recogniser, replaced_folder
from sklearn_clip._models.families import EXPORT_FAMILIES
from sklearn_clip._models.forward import image_features, text_features
from sklearn_clip._models.weights import weights_dtype
from sklearn_clip._options import EXPORT_BACKENDS, QUANTIZATIONS

# What the export needs besides PyTorch, by backend.
_EXPORT_PACKAGES = {
    "onnx": ("onnx", "onnxscript", "onnxruntime"),
    "openvino": ("onnx", "onnxscript", "openvino", "nncf"),
}


class _ImageTower(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return image_features(self.model, pixel_values)


class _TextTower(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None):
        return text_features(
            self.model, input_ids, attention_mask, share_prefixes=False
        )


def export_model(
    model, path, *, backend="onnx", quantize=None, revision=None, overwrite=False
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
    _check_options(backend, quantize)
    check = functools.partial(
        check_export_path, path, overwrite=overwrite, sources=_sources(model)
    )
    path = check()  # before the model is even loaded
    handle = _float32_handle(model, revision)
    _check_exportable(handle)
    # Again with the folder the weights were read from (a hub id's snapshot).
    check = functools.partial(check, sources=(*_sources(model), handle.folder))
    check()
    with replaced_folder(path, check=check) as staging:
        _write_export(handle, staging, backend, quantize)
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
        recognise=folder_marker_recogniser(MANIFEST_NAME),
        kind=f"an sklearn-clip export (it has no {MANIFEST_NAME})",
    )


def _sources(model):
    """The folders ``model`` is read from: a path, or a handle's folder."""
    if isinstance(model, (str, os.PathLike)):
        return (model,)
    return (model.folder, model.source)


def _check_options(backend, quantize):
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
                'pip install "sklearn-clip[export]"'
            ) from None


def _float32_handle(model, revision):
    """A float32 PyTorch handle on the CPU of ``model``, which is left as it is."""
    from sklearn_clip._encoding.handle import ModelHandle
    from sklearn_clip._encoding.handle_base import EncoderHandle
    from sklearn_clip._encoding.registry import load_model

    if not isinstance(model, EncoderHandle):
        return load_model(
            model, backend="torch", revision=revision, device="cpu", dtype="float32"
        )
    if not model.trainable:
        raise ValueError(
            f"{model!r} is an export already; export the PyTorch model it came "
            f"from ({model.source_model['source']!r})."
        )
    weights = model.full_precision_model()
    cpu = next(weights.parameters()).device.type == "cpu"
    if weights_dtype(weights) != torch.float32 or not cpu:
        weights = copy.deepcopy(weights).to(device="cpu", dtype=torch.float32)
    handle = ModelHandle(
        weights,
        model.tokenizer,
        model.image_processor,
        source=model.source,
        revision=model.revision,
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    handle._directory = model._directory
    return handle


def _check_exportable(handle):
    if handle.family not in EXPORT_FAMILIES or not isinstance(
        handle.image_config, ImageConfig
    ):
        raise ValueError(
            f"a {handle.family!r} model cannot be exported; sklearn-clip exports "
            f"the model types {', '.join(EXPORT_FAMILIES)}."
        )


def _write_export(handle, folder, backend, quantize):
    with torch.no_grad(), _quiet_exporter():
        _export_towers(handle, folder)
        if backend == "openvino":
            _convert_to_openvino(folder, quantize)
        elif quantize == "int8":
            _quantize_onnx(folder)
    handle.tokenizer.save_pretrained(folder)
    handle.image_processor.save_pretrained(folder)
    write_manifest(folder, _manifest(handle, backend, quantize))


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


def _export_towers(handle, folder):
    model = handle.model.eval()
    height, width = handle.image_config.output_size
    batch = torch.export.Dim("batch", min=1)
    pixels = torch.zeros(2, 3, height, width)
    input_ids, mask = (
        torch.from_numpy(array) if array is not None else None
        for array in token_ids(handle, ["a photo", "a photo of a red circle"])
    )
    # SigLIP's text is always padded to its full context: only the batch varies.
    text_axes = {0: batch}
    if not handle.pad_to_max_length:
        text_axes[1] = torch.export.Dim("sequence", min=2)
    text_inputs = (input_ids,) if mask is None else (input_ids, mask)
    towers = {
        "image": (_ImageTower(model), (pixels,), ["pixel_values"], ({0: batch},)),
        "text": (
            _TextTower(model),
            text_inputs,
            ["input_ids", "attention_mask"][: len(text_inputs)],
            (text_axes,) * len(text_inputs),
        ),
    }
    for kind, (module, inputs, names, shapes) in towers.items():
        torch.onnx.export(
            module.eval(),
            inputs,
            str(folder / TOWER_FILES["onnx"][kind]),
            input_names=names,
            output_names=[f"{kind}_embeds"],
            dynamic_shapes=shapes,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


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
            "weight_files": source_weight_digests(handle._directory),
        },
        "versions": {name: _version(name) for name in packages},
    }


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
