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

from sklearn_clip._backends.exported.manifest import (
    MANIFEST_NAME,
    changed_since_loading,
    check_unchanged,
    export_fingerprint,
    file_digest,
    read_manifest,
)
from sklearn_clip._backends.exported.runtime import TOWER_FILES, Tower, tower_files
from sklearn_clip._backends.interface import EncoderHandle
from sklearn_clip._backends.state import HandleState
from sklearn_clip._encoding.preprocess import image_preprocessing, normalize_batch_numpy
from sklearn_clip._encoding.tokens import token_ids
from sklearn_clip._folders import save_model_folder
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
        files = TOWER_FILES[self.backend]
        self._towers = {
            kind: Tower(self.directory, name, self.backend, manifest["files"])
            for kind, name in files.items()
        }
        self.image_processor = self._read_checked(read_image_processor)
        self.image_config = image_preprocessing(self.image_processor)
        self._tokenizer = None

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

            self._tokenizer = self._read_checked(
                lambda directory: AutoTokenizer.from_pretrained(
                    str(directory), local_files_only=True
                )
            )
        return self._tokenizer

    def _read_checked(self, read):
        """``read(directory)``, then a check that what transformers read is what
        was checked at loading (the towers check their own files on opening)."""
        with quiet_transformers():
            value = read(self.directory)
        towers = {
            name
            for tower in TOWER_FILES[self.backend].values()
            for name in tower_files(self.backend, tower)
        }
        others = [name for name in self.manifest["files"] if name not in towers]
        check_unchanged(self.directory, self.manifest, others)
        return value

    def _weights_signature(self):
        return self.fingerprint  # a file changed under it is refused, never run

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

        Each copy is checked to be the file loaded: an export written again
        in place since is refused, naming the file, never copied.

        ``path`` may be new, an empty folder or a model saved here before
        (replaced whole, once the copy is complete); never the export itself,
        a folder holding it, or the current directory.

        Parameters
        ----------
        path : str or pathlib.Path
            The directory; it is created if needed.

        Returns
        -------
        pathlib.Path
            The directory.
        """
        return save_model_folder(
            path, self._write_files, sources=(self.folder,), marker=MANIFEST_NAME
        )

    @property
    def folder(self):
        """The folder the model's files are read from (None: held in memory).

        Outputs never replace it (docs/reliability.md).
        """
        return self.directory

    def _write_files(self, path):
        """Copy the export's files into the existing folder ``path``, checked."""
        path = Path(path)
        for name, expected in self.manifest["files"].items():
            if not (self.directory / name).is_file():
                raise changed_since_loading(self.directory, name)
            shutil.copyfile(self.directory / name, path / name)
            # The copy is checked, not the source: it is what was written.
            if file_digest(path / name) != expected:
                raise changed_since_loading(self.directory, name)
        shutil.copyfile(self.directory / MANIFEST_NAME, path / MANIFEST_NAME)
        if read_manifest(path) != self.manifest:
            (path / MANIFEST_NAME).unlink()  # not an export of other files
            raise changed_since_loading(self.directory, MANIFEST_NAME)
        return path

    def __repr__(self):
        return (
            f"ExportedModelHandle({self.source!r}, backend={self.backend!r}, "
            f"precision={self.precision_name!r})"
        )
