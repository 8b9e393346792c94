"""The handle of an exported model: the encoders' interface over a runtime.

:class:`ExportedModelHandle` is what :func:`~sklearn_clip.load_model` returns
for ``backend="onnx"`` or ``"openvino"``. It reads its facts from the export's
manifest, its tokenizer and image preprocessing from the files transformers
wrote there, and runs each tower in the runtime; decoding, batching, the
cache and ``on_error`` are the encoders' own, as for a PyTorch model. Nothing
here imports PyTorch.
"""

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from sklearn_clip._encoding.exported.manifest import MANIFEST_NAME, export_fingerprint
from sklearn_clip._encoding.exported.runtime import TOWER_FILES, Tower
from sklearn_clip._encoding.handle_base import EncoderHandle
from sklearn_clip._encoding.handle_state import HandleState
from sklearn_clip._encoding.preprocess import image_preprocessing, normalize_batch_numpy
from sklearn_clip._encoding.tokens import token_ids
from sklearn_clip._models.loading import quiet_transformers, read_image_processor

#: Where an exported model runs.
CPU = SimpleNamespace(type="cpu")


def _unit_rows(embeddings):
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, np.float32(1e-12))


class ExportedModelHandle(EncoderHandle, HandleState):
    """A model exported by :func:`~sklearn_clip.export_model`, run without PyTorch.

    Do not build one directly: use ``load_model(path, backend="onnx")`` (or
    ``"openvino"``). Estimators take it as their ``model``, as they take a
    :class:`~sklearn_clip.ModelHandle`; it cannot be fine-tuned.

    Parameters
    ----------
    directory : str or pathlib.Path
        The export directory (its files were checked by the caller).
    manifest : dict
        Its manifest.

    Attributes
    ----------
    backend : {"onnx", "openvino"}
        The runtime.
    precision_name : {"float32", "int8"}
        The precision of the exported weights.
    source, revision : str or None
        Where the export is (or the hub id it was loaded by).
    source_model : dict
        The model it was exported from: ``source``, ``revision``,
        ``fingerprint`` (its :attr:`ModelHandle.fingerprint`).
    fingerprint : str
        The export's identity: a SHA-256 over its files.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn_clip import export_model, load_model
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> path = export_model(make_tiny_clip(), tempfile.mkdtemp() + "/onnx")
    >>> handle = load_model(path)
    >>> handle.backend, handle.encode_texts(["a red circle"]).shape
    ('onnx', (1, 32))
    """

    def __init__(self, directory, manifest):
        self.directory = Path(directory)
        self.manifest = manifest
        self.backend = manifest["backend"]
        self.precision_name = manifest["precision"]
        self.source, self.revision = str(directory), None
        self.source_model = manifest["source_model"]
        self.device, self.dtype = CPU, None
        self.compile_options = None
        self.fingerprint = self.run_fingerprint = export_fingerprint(manifest)
        with quiet_transformers():
            self.image_processor = read_image_processor(directory)
        self.image_config = image_preprocessing(self.image_processor)
        self._tokenizer = None
        files = TOWER_FILES[self.backend]
        self._towers = {
            kind: Tower(self.directory / name, self.backend)
            for kind, name in files.items()
        }

    # -- what the model is ---------------------------------------------------
    family = property(lambda self: self.manifest["family"])
    is_sigmoid = property(lambda self: self.manifest["is_sigmoid"])
    embedding_dim = property(lambda self: self.manifest["embedding_dim"])
    logit_scale = property(lambda self: self.manifest["logit_scale"])
    logit_bias = property(lambda self: self.manifest["logit_bias"])
    context_length = property(lambda self: self.manifest["context_length"])
    pad_to_max_length = property(lambda self: self.manifest["pad_to_max_length"])
    pad_token_id = property(lambda self: self.manifest["pad_token_id"])

    @property
    def tokenizer(self):
        # Read on first use: a process that only embeds images never needs it.
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            with quiet_transformers():
                self._tokenizer = AutoTokenizer.from_pretrained(
                    str(self.directory), local_files_only=True
                )
        return self._tokenizer

    def _weights_signature(self):
        return self.fingerprint  # an export's files do not change under it

    # -- encoding --------------------------------------------------------------
    def _embed_image_batch(self, prepared, normalize):
        pixels = normalize_batch_numpy(prepared, self.image_config)
        inputs = pixels if isinstance(pixels, dict) else {"pixel_values": pixels}
        embeddings = self._towers["image"](inputs)
        return _unit_rows(embeddings) if normalize else embeddings

    def _embed_text_batch(self, texts, normalize):
        input_ids, mask = token_ids(self, texts)
        inputs = {"input_ids": input_ids}
        if mask is not None:
            inputs["attention_mask"] = mask
        embeddings = self._towers["text"](inputs)
        return _unit_rows(embeddings) if normalize else embeddings

    # -- persistence -------------------------------------------------------------
    def _reference(self):
        return {
            "source": self.source,
            "revision": self.revision,
            "backend": self.backend,
            "fingerprint": self.fingerprint,
        }

    def save_pretrained(self, path):
        """Copy the export's files to ``path``, which :func:`load_model` reads.

        Parameters
        ----------
        path : str or pathlib.Path
            The directory; it is created if needed.

        Returns
        -------
        pathlib.Path
            The directory.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name in [*self.manifest["files"], MANIFEST_NAME]:
            shutil.copyfile(self.directory / name, path / name)
        return path

    def __repr__(self):
        return (
            f"ExportedModelHandle({self.source!r}, backend={self.backend!r}, "
            f"precision={self.precision_name!r})"
        )
