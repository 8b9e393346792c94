"""What every model handle is to the encoders, whatever runs the model.

:class:`EncoderHandle` holds what the PyTorch handle
(:class:`~sklearn_clip.ModelHandle`) and the handle of an exported model
(ONNX Runtime, OpenVINO) share: the public ``encode_images`` and
``encode_texts``, which go through the one encoding entry point
(:mod:`sklearn_clip._encoding.encode`). A subclass says how one batch becomes
embeddings and what the model is; this module imports neither PyTorch nor
an inference runtime.
"""

import warnings

from sklearn_clip._encoding import encode as _encode
from sklearn_clip._encoding.inputs import as_rows, check_texts

DEFAULT_MODEL = "openai/clip-vit-base-patch32"


class EncoderHandle:
    """A loaded model as the encoders see it; see :func:`~sklearn_clip.load_model`.

    Subclasses provide :meth:`_embed_image_batch` and :meth:`_embed_text_batch`,
    the facts ``embedding_dim``, ``image_config``, ``device``, ``source``,
    ``revision``, ``family``, ``is_sigmoid``, ``logit_scale``, ``logit_bias``,
    ``tokenizer``, ``context_length``, ``pad_to_max_length``,
    ``pad_token_id``, and the identities ``fingerprint`` (the model's),
    ``run_fingerprint`` (what computes the embeddings: the embedding cache is
    keyed by it), ``precision_name`` and :meth:`_weights_signature`.
    """

    #: Whether the model can be fine-tuned (its weights are PyTorch's).
    trainable = False

    @property
    def folder(self):
        """The folder the model's files are read from (None: held in memory).

        Outputs never replace it (docs/reliability.md).
        """
        return None

    def __sklearn_clone__(self):
        # A handle is a shared resource, not a parameter value to copy: cloning
        # an estimator must not duplicate the weights.
        return self

    def warn_once(self, key, message):
        # For the encoders: warn about ``key`` the first time only.
        warned = self.__dict__.setdefault("_warned", set())
        if key not in warned:
            warned.add(key)
            warnings.warn(message, UserWarning, stacklevel=4)

    def _embed_image_batch(self, prepared, normalize):
        """Embed one batch of prepared images: what a backend computes.

        The encoders call it; decoding, batching, caching and failed rows are
        theirs, the same for every backend.

        Parameters
        ----------
        prepared : list
            The images as :func:`~sklearn_clip._encoding.images.prepare_image`
            makes them (resized and cropped ``uint8`` arrays, or the image
            processor's records).
        normalize : bool
            Scale each embedding to unit length.

        Returns
        -------
        ndarray of shape (n_images, embedding_dim), dtype float32
        """
        raise NotImplementedError

    def _embed_text_batch(self, texts, normalize):
        """Embed one batch of texts: what a backend computes.

        Parameters
        ----------
        texts : list of str
            The texts, tokenized here as the family pads and truncates them.
        normalize : bool
            Scale each embedding to unit length.

        Returns
        -------
        ndarray of shape (n_texts, embedding_dim), dtype float32
        """
        raise NotImplementedError

    def _weights_signature(self):
        """A token that changes whenever the weights change, cheap to take.

        The in-process memo of text embeddings keys its entries by it.

        Returns
        -------
        object
        """
        raise NotImplementedError

    def encode_images(
        self,
        images,
        *,
        batch_size=32,
        normalize=True,
        on_error="raise",
        progress=False,
        cache=None,
    ):
        """Embed images into a float32 array of shape ``(n, embedding_dim)``.

        Parameters
        ----------
        images : sequence of images
            Paths, bytes, PIL images or arrays, in any container the
            estimators accept.
        batch_size : int, default=32
            Images per forward pass.
        normalize : bool, default=True
            Scale each embedding to unit length.
        on_error : {"raise", "nan"}, default="raise"
            What an unreadable image does: raise an error naming the row, or
            give a row of NaN.
        progress : bool, default=False
            Show a progress bar.
        cache : EmbeddingCache, default=None
            An embedding cache on disk (what ``cache_dir=`` builds).

        Returns
        -------
        ndarray of shape (n_images, embedding_dim)
            The embeddings, one row per image, in order.
        """
        rows, index = as_rows(images, kind="image")
        embeddings, failures = _encode.encode_rows(
            self,
            rows,
            index,
            modality="image",
            batch_size=batch_size,
            normalize=normalize,
            on_error=on_error,
            progress=progress,
            cache=cache,
        )
        _encode.report_failures(failures, rows, index)
        return embeddings

    def encode_texts(
        self, texts, *, batch_size=256, normalize=True, cache=None, order="length"
    ):
        """Embed texts into a float32 array of shape ``(n, embedding_dim)``.

        Parameters
        ----------
        texts : sequence of str
            The texts, in any container the estimators accept.
        batch_size : int, default=256
            Texts per forward pass.
        normalize : bool, default=True
            Scale each embedding to unit length.
        cache : EmbeddingCache, default=None
            An embedding cache on disk (what ``cache_dir=`` builds).
        order : str, default="length"
            How texts are grouped into batches; it does not change the result.

        Returns
        -------
        ndarray of shape (n_texts, embedding_dim)
            The embeddings, one row per text, in order.
        """
        rows, index = as_rows(texts, kind="text")
        return _encode.encode_texts(
            self,
            check_texts(rows, index),
            batch_size=batch_size,
            normalize=normalize,
            cache=cache,
            order=order,
        )
