"""What runs a model: PyTorch, or an export for ONNX Runtime or OpenVINO.

Each backend is one subpackage behind the same small interface
(:class:`sklearn_clip._backends.interface.EncoderHandle`): it embeds a batch
of prepared images or tokenized texts, states the facts the encoders need,
saves its files and pickles as plain values. The backends never import each
other, nor the loader above them (:mod:`sklearn_clip._loader`); only
:mod:`sklearn_clip._backends.torch` imports PyTorch.
"""
