"""One tower of an exported model, run by ONNX Runtime or OpenVINO.

A :class:`Tower` is opened on first use, so that a process that only embeds
queries (a search service) never reads the image tower, and the reverse.
Both runtimes compute in float32 on every CPU: OpenVINO would otherwise run
bfloat16 on CPUs with native bfloat16 units, and answers would depend on the
machine.
"""

import threading

import numpy as np

#: The file of each tower, by backend.
TOWER_FILES = {
    "onnx": {"image": "image_model.onnx", "text": "text_model.onnx"},
    "openvino": {"image": "image_model.xml", "text": "text_model.xml"},
}


def runtime_missing_message(backend):
    package = {"onnx": "onnxruntime", "openvino": "openvino"}[backend]
    return (
        f"the {backend!r} backend needs the {package!r} package: "
        f'pip install "sklearn-clip[{backend}]"'
    )


class Tower:
    """The image or text tower of an export; call it with a dict of arrays."""

    def __init__(self, path, backend):
        self.path = str(path)
        self.backend = backend
        self._run = None
        self._lock = threading.Lock()

    def __call__(self, inputs):
        if self._run is None:
            with self._lock:
                if self._run is None:
                    self._run = _open(self.path, self.backend)
        return np.asarray(self._run(inputs), dtype=np.float32)


def _open(path, backend):
    try:
        opener = _open_onnx if backend == "onnx" else _open_openvino
        return opener(path)
    except ImportError as exc:
        raise ImportError(runtime_missing_message(backend)) from exc


def _open_onnx(path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no notes about fused nodes
    session = onnxruntime.InferenceSession(
        path, options, providers=["CPUExecutionProvider"]
    )
    names = {item.name for item in session.get_inputs()}

    def run(inputs):
        return session.run(None, {k: v for k, v in inputs.items() if k in names})[0]

    return run


def _open_openvino(path):
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    names = {name for port in compiled.inputs for name in port.get_names()}

    def run(inputs):
        # A request per call: calls from several threads never share one.
        request = compiled.create_infer_request()
        result = request.infer({k: v for k, v in inputs.items() if k in names})
        return result[compiled.output(0)]

    return run
