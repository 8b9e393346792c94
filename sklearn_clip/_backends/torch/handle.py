"""The model handle: a loaded CLIP-family model and how to feed it.

A :class:`ModelHandle` is what estimators share. It is made by
:func:`~sklearn_clip.load_model` (see :mod:`sklearn_clip._loader.registry`,
which keeps one per model per process) or by a fine-tuner;
``sklearn.base.clone`` keeps it by identity, and pickling sends only where it
came from (or its files, for weights that live only in memory).
"""

import threading
from pathlib import Path

import torch

from sklearn_clip._backends.interface import DEFAULT_MODEL, EncoderHandle
from sklearn_clip._backends.state import HandleState
from sklearn_clip._backends.torch.checkpoint import read_checkpoint
from sklearn_clip._backends.torch.facts import ModelFacts
from sklearn_clip._backends.torch.fingerprints import (
    check_reread_weights,
    model_fingerprint,
    weights_fingerprint,
    weights_signature,
)
from sklearn_clip._backends.torch.forward import (
    compile_image_features,
    image_features,
    text_features,
    use_fast_activations,
)
from sklearn_clip._backends.torch.precision import dtype_name
from sklearn_clip._backends.torch.tensors import normalize_batch, tokenize
from sklearn_clip._backends.torch.weights import (
    at_precision,
    weights_dtype,
)
from sklearn_clip._encoding.preprocess import image_preprocessing
from sklearn_clip._folders import save_model_folder
from sklearn_clip._models.loading import (
    family_processor,
    image_processor_from_settings,
    quiet_transformers,
)

__all__ = ["DEFAULT_MODEL", "ModelHandle"]


def _to_numpy(embeddings, normalize):
    embeddings = embeddings.float()
    if normalize:
        embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
    return embeddings.cpu().numpy()


class ModelHandle(EncoderHandle, ModelFacts, HandleState):
    """A loaded CLIP-family model with its tokenizer and image preprocessing.

    Do not build one directly: use :func:`load_model`, or take ``model_`` from
    a fitted :class:`~sklearn_clip.CLIPContrastiveFinetuner`.

    What users call: :meth:`encode_images`, :meth:`encode_texts`,
    :meth:`save_pretrained`, :meth:`with_model`, and the facts
    :attr:`embedding_dim`, :attr:`family`, :attr:`is_sigmoid`,
    :attr:`fingerprint`. The other methods serve the estimators.

    Parameters
    ----------
    model : torch.nn.Module
        A ``transformers`` CLIP-family model; it is put in eval mode.
    tokenizer : transformers tokenizer
        The model's tokenizer.
    image_processor : transformers image processor or dict
        The checkpoint's own (as ``AutoImageProcessor`` loads it), or its
        settings as a dict, resolved through ``AutoImageProcessor``.
    source, revision : str, default=None
        Where the weights came from; None for weights that live only in memory.
    device, dtype : torch.device and torch.dtype, default=None
        Where the weights are and the precision they run at; None reads them
        from the model.
    compile_options : dict, default=None
        Keyword arguments of ``torch.compile`` for the image forward pass (see
        :func:`load_model`); None runs it eagerly.
    stored_dtype : torch.dtype, default=None
        The precision of the weights as loaded or trained, before any cast for
        inference: what :meth:`save_pretrained` writes and fine-tuning starts
        from. None means ``dtype`` (or ``master``'s precision).
    master : torch.nn.Module, default=None
        The same weights at full precision, where ``model`` is a lower
        precision copy of weights that live only in memory (a fine-tuned
        model's float32 master weights). Saving and fine-tuning use it.

    Attributes
    ----------
    model, tokenizer, image_processor, source, revision, device, dtype, \
stored_dtype, compile_options
        As given (``model`` in eval mode).
    image_config : ImageConfig or ProcessorImages
        How images are preprocessed: the fast path for the processors it is
        proven for, else the image processor itself.

    Examples
    --------
    >>> from sklearn_clip import load_model
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> handle = load_model(make_tiny_clip())
    >>> handle.embedding_dim
    32
    >>> handle.encode_texts(["a red circle", "a blue square"]).shape
    (2, 32)
    >>> len(handle.fingerprint)  # a SHA-256 of the weights, in hex
    64
    """

    def __init__(
        self,
        model,
        tokenizer,
        image_processor,
        *,
        source=None,
        revision=None,
        device=None,
        dtype=None,
        compile_options=None,
        stored_dtype=None,
        master=None,
    ):
        self.model = use_fast_activations(model.eval())
        self.tokenizer = tokenizer
        if isinstance(image_processor, dict):
            image_processor = image_processor_from_settings(image_processor)
        self.image_processor = image_processor
        self.image_config = image_preprocessing(image_processor)
        self.source = source
        self.revision = revision
        self.device = device or next(model.parameters()).device
        self.dtype = dtype or weights_dtype(model)
        self.compile_options = compile_options
        self._master = master
        if master is not None:
            stored_dtype = weights_dtype(master)
        self.stored_dtype = stored_dtype or self.dtype
        self._directory = None  # where the weights can be read again
        # The identity of weights cast after they were read (set at loading,
        # as the stored bytes are no longer in memory).
        self._stored_fingerprint = None
        self._compiled_image_features = None
        self._lock = threading.Lock()

    # -- what the model is -------------------------------------------------
    @property
    def family(self):
        """The transformers model type (``"clip"``, ``"siglip2"``, ...)."""
        return self.model.config.model_type

    @property
    def is_sigmoid(self):
        """True for SigLIP-style models, scored with a sigmoid and a bias."""
        return self._facts.sigmoid

    @property
    def embedding_dim(self):
        """The length of an embedding, for images and texts alike."""
        config = self.model.config
        if getattr(config, "projection_dim", None):
            return int(config.projection_dim)
        text = config.text_config
        return int(getattr(text, "projection_size", None) or text.hidden_size)

    @property
    def fingerprint(self):
        """The model's identity: a hash of its weights as stored, and its config.

        Any precision the weights run at gives the same fingerprint; other
        weights under the same path give another. Fitted estimators, embedding
        cache entries and ``sklearn-clip embed`` shards record it, and a
        pickled estimator refuses to answer with weights whose fingerprint
        differs from the one it was fitted with.
        """
        if self._master is not None:
            return weights_fingerprint(self._master)
        if self._stored_fingerprint is not None:
            return self._stored_fingerprint
        return weights_fingerprint(self.model)

    @property
    def run_fingerprint(self):
        # The weights at the precision they run at: a bfloat16 copy of float32
        # weights gives other embeddings, so the embedding cache keeps them apart.
        return model_fingerprint(self)

    @property
    def precision_name(self):
        return dtype_name(self.dtype)

    def _weights_signature(self):
        return weights_signature(self.model)

    # -- encoding ----------------------------------------------------------
    def _embed_image_batch(self, prepared, normalize):
        pixels = normalize_batch(prepared, self.image_config, self.device, self.dtype)
        with torch.inference_mode():
            return _to_numpy(self.image_features(pixels), normalize)

    def _embed_text_batch(self, texts, normalize):
        input_ids, mask = tokenize(self, texts, self.device)
        with torch.inference_mode():
            return _to_numpy(text_features(self.model, input_ids, mask), normalize)

    def image_features(self, pixel_values):
        # For the encoders: image embeddings (n, embedding_dim), not
        # normalised, of ready pixels on the model's device; compiled if asked.
        if self.compile_options is None:
            return image_features(self.model, pixel_values)
        if self._compiled_image_features is None:
            self._compiled_image_features = compile_image_features(
                self.model, self.compile_options
            )
        return self._compiled_image_features(pixel_values)

    # -- persistence -------------------------------------------------------
    def full_precision_model(self):
        """The model at its stored precision (:attr:`stored_dtype`).

        Where the handle runs a lower-precision copy (bfloat16 for inference),
        this is the float32 master copy of trained weights, or the checkpoint
        read again from its directory on the CPU (refused if the weights there
        are no longer those this handle loaded); otherwise the model itself.

        Returns
        -------
        torch.nn.Module
            Not to be modified: it may be the handle's own model.
        """
        if self._master is not None:
            return self._master
        if self.dtype == self.stored_dtype or self._directory is None:
            return self.model
        model, _, _ = read_checkpoint(
            self._directory, torch.device("cpu"), self.stored_dtype
        )
        check_reread_weights(model, self.fingerprint, self._directory)
        # The same activations as the handle's own model, so that training
        # from here equals training from a float32 handle bit for bit.
        return use_fast_activations(model.eval())

    def save_pretrained(self, path):
        """Write safetensors weights and the family's processor to ``path``.

        The weights are written at their stored precision (a float32
        checkpoint loaded as bfloat16 for inference is saved as float32), so
        saving never loses precision.

        The family's processor saves itself (``processor_config.json`` and the
        tokenizer files in transformers 5); the image processor's own
        ``preprocessor_config.json`` is written too, which transformers 4
        reads. A model read from an open_clip checkpoint is saved in this
        layout too, never in open_clip's.

        ``path`` may be new, an empty folder or a model saved here before
        (replaced whole, once the new folder is complete); never the folder
        the model was loaded from, one holding it, or the current directory.

        Parameters
        ----------
        path : str or pathlib.Path
            The directory; it is created if needed.

        Returns
        -------
        pathlib.Path
            The directory, readable by :func:`load_model` and ``transformers``.
        """
        return save_model_folder(path, self._write_files, sources=(self.folder,))

    @property
    def folder(self):
        """The folder the model's files are read from (None: held in memory).

        Outputs never replace it (docs/reliability.md).
        """
        return self._directory

    def _write_files(self, folder):
        """Write the model's files into ``folder``, which exists, as it is."""
        model = self.full_precision_model()  # refused before anything is written
        folder = Path(folder)
        processor = family_processor(self.family, self.image_processor, self.tokenizer)
        with quiet_transformers():
            model.save_pretrained(folder, safe_serialization=True)
            processor.save_pretrained(folder)
            self.image_processor.save_pretrained(folder)
        return folder

    def with_model(self, model, *, source=None, revision=None):
        """Return a new handle around ``model`` with this tokenizer and preprocessing.

        Parameters
        ----------
        model : torch.nn.Module
            A model of the same architecture (e.g. fine-tuned weights), at
            any precision. It runs on this handle's device and dtype; where
            its own precision differs (float32 trained weights for a bfloat16
            handle), it is kept on the CPU as the master copy that saving and
            further fine-tuning use, and a converted copy runs.
        source, revision : str, default=None
            Where its weights came from; None for weights only in memory.

        Returns
        -------
        ModelHandle
            The new handle, on this handle's device and dtype.
        """
        run, master = at_precision(model, self.device, self.dtype)
        return ModelHandle(
            run,
            self.tokenizer,
            self.image_processor,
            source=source,
            revision=revision,
            device=self.device,
            dtype=self.dtype,
            compile_options=self.compile_options,
            master=master,
        )

    trainable = True

    def _reference(self):
        return {
            "source": self.source,
            "revision": self.revision,
            "device": self.device.type,
            "dtype": dtype_name(self.dtype),
            "compile": self.compile_options,
            "fingerprint": self.fingerprint,
        }

    def __sklearn_clone__(self):
        # A handle is a shared resource, not a parameter value to copy: cloning
        # an estimator must not duplicate the weights.
        return self

    def _export_onnx_towers(self, paths):
        """Trace the image and text towers into ONNX files.

        ``paths`` maps ``"image"`` and ``"text"`` to the files to write; the
        towers compute what this handle's forward passes compute (see
        :func:`sklearn_clip.export_model`, which writes whole exports).
        """
        from sklearn_clip._backends.torch.tracing import export_onnx_towers

        export_onnx_towers(self, paths)

    def _float32_cpu_copy(self):
        """This model at float32 on the CPU: itself, or a copy of its weights."""
        from sklearn_clip._backends.torch.tracing import float32_cpu_copy

        return float32_cpu_copy(self)

    def __repr__(self):
        name = self.source if self.source is not None else "in-memory weights"
        return (
            f"ModelHandle({name!r}, {type(self.model).__name__}, "
            f"device={str(self.device)!r}, dtype={str(self.dtype)!r})"
        )
