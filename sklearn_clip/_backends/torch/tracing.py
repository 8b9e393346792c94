"""Tracing a PyTorch model's towers for an export (ONNX graphs).

Each tower is traced by PyTorch's ONNX exporter through the package's own
forward passes (:mod:`sklearn_clip._backends.torch.forward`), so an export
computes what the PyTorch path computes. Writing the rest of an export
(runtimes, int8, the record) needs no PyTorch:
:mod:`sklearn_clip._backends.exported.writing`.
"""

import copy

import torch

from sklearn_clip._backends.torch.forward import image_features, text_features
from sklearn_clip._backends.torch.weights import weights_dtype
from sklearn_clip._encoding.tokens import token_ids


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


def export_onnx_towers(handle, paths):
    """Trace ``handle``'s towers with PyTorch's ONNX exporter into ``paths``.

    ``paths`` maps ``"image"`` and ``"text"`` (or one of them) to the files
    to write. The batch
    (and, where texts are not padded to their full context, the sequence) is
    a dynamic axis.
    """
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
    for kind in paths:  # one tower or both
        module, inputs, names, shapes = towers[kind]
        with torch.no_grad():
            _export_one(module, inputs, paths[kind], names, kind, shapes)


def _export_one(module, inputs, path, names, kind, shapes):
    torch.onnx.export(
        module.eval(),
        inputs,
        str(path),
        input_names=names,
        output_names=[f"{kind}_embeds"],
        dynamic_shapes=shapes,
        dynamo=True,
        external_data=False,
        verbose=False,
    )


def float32_cpu_copy(handle):
    """``handle``'s model at float32 on the CPU: itself, or a copy of its weights."""
    weights = handle.full_precision_model()
    cpu = next(weights.parameters()).device.type == "cpu"
    if weights_dtype(weights) == torch.float32 and cpu:
        if handle.dtype == torch.float32 and handle.device.type == "cpu":
            return handle
    else:
        weights = copy.deepcopy(weights).to(device="cpu", dtype=torch.float32)
    copied = type(handle)(
        weights,
        handle.tokenizer,
        handle.image_processor,
        source=handle.source,
        revision=handle.revision,
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    copied._directory = handle.folder
    return copied
