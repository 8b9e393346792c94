"""Option lists that several modules accept, each defined once."""

#: What an unreadable input row does (see the estimators' ``on_error``).
ON_ERROR_OPTIONS = ("raise", "nan")

#: What an unusable training pair does (the fine-tuner's ``on_error``).
PAIR_ON_ERROR_OPTIONS = ("raise", "skip")

#: How a clip's frame embeddings become its embedding (``video={"pooling": ...}``).
VIDEO_POOLINGS = ("mean", "max")

#: Names accepted by ``dtype=`` besides ``"auto"``.
DTYPE_NAMES = ("float32", "bfloat16", "float16")

#: How the on-disk embedding cache stores vectors.
CACHE_DTYPES = ("float32", "float16")

#: What runs a model: PyTorch, or an exported copy in an inference runtime.
BACKENDS = ("torch", "onnx", "openvino")

#: The inference runtimes a model can be exported to (``export_model``).
EXPORT_BACKENDS = ("onnx", "openvino")

#: How an export's weights are stored: None (float32) or ``"int8"``.
QUANTIZATIONS = (None, "int8")

#: What a saved model handle may ask of ``torch.compile``: each keyword and
#: the values it may take. ``load_model(compile=...)`` in code takes any
#: keywords; a file read back may not (``options`` reaches the C++ compiler's
#: command line, a ``backend`` may name any registered callable).
COMPILE_OPTIONS = {
    "backend": ("inductor", "eager", "aot_eager", "cudagraphs"),
    "mode": (
        None,
        "default",
        "reduce-overhead",
        "max-autotune",
        "max-autotune-no-cudagraphs",
    ),
    "fullgraph": (True, False),
    "dynamic": (None, True, False),
}
