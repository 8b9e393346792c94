"""One tower of an exported model, run by ONNX Runtime or OpenVINO.

A :class:`Tower` is opened on first use, so that a process that only embeds
queries (a search service) never reads the image tower, and the reverse. It
is opened from bytes read once and checked against the digests the export
recorded when it was loaded: a tower rewritten in place since (an export
written again into the same folder) is refused, never run beside the other
tower of the old model. Both runtimes compute in float32 on every CPU:
OpenVINO would otherwise run bfloat16 on CPUs with native bfloat16 units, and
answers would depend on the machine.
"""

import hashlib
import threading
from pathlib import Path

import numpy as np

from sklearn_clip._backends.exported.manifest import changed_since_loading

#: The file of each tower, by backend.
TOWER_FILES = {
    "onnx": {"image": "image_model.onnx", "text": "text_model.onnx"},
    "openvino": {"image": "image_model.xml", "text": "text_model.xml"},
}


def runtime_missing_message(backend):
    package = {"onnx": "onnxruntime", "openvino": "openvino"}[backend]
    return (
        f"the {backend!r} backend needs the {package!r} package: "
        f"pip install {package}, the package's {backend!r} extra"
    )


def tower_files(backend, name):
    """The files a tower is read from: its graph, and OpenVINO's weights."""
    if backend == "openvino":
        return [name, str(Path(name).with_suffix(".bin"))]
    return [name]


class Tower:
    """The image or text tower of an export; call it with a dict of arrays.

    Parameters
    ----------
    directory : pathlib.Path
        The export directory.
    name : str
        The tower's file (``image_model.onnx``, ``text_model.xml``, ...).
    backend : {"onnx", "openvino"}
        The runtime.
    digests : dict
        ``{file name: SHA-256}`` as checked when the export was loaded.
    """

    def __init__(self, directory, name, backend, digests):
        self.directory = Path(directory)
        self.path = str(self.directory / name)
        self.backend = backend
        self._digests = {file: digests.get(file) for file in tower_files(backend, name)}
        self._run = None
        self._lock = threading.Lock()

    def __call__(self, inputs):
        if self._run is None:
            with self._lock:
                if self._run is None:
                    self._run = _open(self._read(), self.backend)
        return np.asarray(self._run(inputs), dtype=np.float32)

    def _read(self):
        # Read once and checked in memory: the bytes hashed are the bytes run.
        data = []
        for name, expected in self._digests.items():
            try:
                data.append((self.directory / name).read_bytes())
            except OSError:
                raise changed_since_loading(self.directory, name) from None
            if expected is None or hashlib.sha256(data[-1]).hexdigest() != expected:
                raise changed_since_loading(self.directory, name)
        return data


def _open(data, backend):
    try:
        opener = _open_onnx if backend == "onnx" else _open_openvino
        return opener(*data)
    except ImportError as exc:
        raise ImportError(runtime_missing_message(backend)) from exc


def _open_onnx(graph):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no notes about fused nodes
    session = onnxruntime.InferenceSession(
        graph, options, providers=["CPUExecutionProvider"]
    )
    names = {item.name for item in session.get_inputs()}

    def run(inputs):
        return session.run(None, {k: v for k, v in inputs.items() if k in names})[0]

    return run


def _open_openvino(graph, weights):
    import openvino

    core = openvino.Core()
    model = core.read_model(graph, weights)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    names = {name for port in compiled.inputs for name in port.get_names()}

    def run(inputs):
        # A request per call: calls from several threads never share one.
        request = compiled.create_infer_request()
        result = request.infer({k: v for k, v in inputs.items() if k in names})
        return result[compiled.output(0)]

    return run
