"""A sklearn-clip model as harnesses take one: a model, a transform, a tokenizer.

CLIP_benchmark (and harnesses like it) call ``transform(PIL image)`` in their
data loader, ``tokenizer(list of str)``, then ``model.encode_image(batch)``
and ``model.encode_text(tokens)`` under ``torch.no_grad()``. Here the
transform gives the model's prepared pixels (resized and cropped ``uint8``,
exactly what the package's own encoders feed the model), and the
"tokens" are keys to the texts: the sklearn-clip model tokenizes them
itself, so the same adapter serves a PyTorch model, an export run by ONNX
Runtime or OpenVINO, and a fine-tuned model, with the numbers the package's
estimators give.
"""

import numpy as np

from sklearn_clip._encoding.images import prepare_image
from sklearn_clip._evaluate.run import resolve_model
from sklearn_clip._torch import torch_or_none


def _tensors():
    module = torch_or_none()
    if module is None:
        raise ImportError(
            "benchmark harnesses exchange PyTorch tensors: pip install torch"
        )
    return module


class BenchmarkModel:
    """``encode_image`` and ``encode_text`` over a sklearn-clip model handle.

    Made by :func:`benchmark_model`, with its transform and tokenizer.

    Parameters
    ----------
    handle : ModelHandle or ExportedModelHandle
        The model.

    Examples
    --------
    >>> from sklearn_clip import load_model
    >>> from sklearn_clip.evaluate import BenchmarkModel
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> model = BenchmarkModel(load_model(make_tiny_clip(), dtype="float32"))
    >>> tuple(model.encode_text(model.tokenizer(["a red circle"])).shape)
    (1, 32)
    """

    def __init__(self, handle):
        self.handle = handle
        self._texts = []

    def transform(self, image):
        """Prepare one image as the model's ``uint8`` pixels, in a tensor.

        Parameters
        ----------
        image : PIL.Image.Image, str, os.PathLike, bytes or ndarray
            The image, as the package's estimators take one.

        Returns
        -------
        torch.Tensor of shape (height, width, 3), uint8
            Resized and cropped as the model's image processor says.
        """
        prepared = prepare_image(image, self.handle.image_config)
        if not isinstance(prepared, np.ndarray):
            raise TypeError(
                f"a {self.handle.family!r} model prepares images with its own "
                "processor, which gives no pixel array to batch; evaluate it with "
                "sklearn_clip.evaluate.evaluate instead"
            )
        return _tensors().from_numpy(np.ascontiguousarray(prepared))

    def tokenizer(self, texts):
        """Give each text a key that :meth:`encode_text` reads.

        Parameters
        ----------
        texts : str or list of str
            The texts.

        Returns
        -------
        torch.Tensor of shape (n_texts, 1), int64
            Keys to the texts (the model tokenizes them itself).
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        start = len(self._texts)
        self._texts.extend(str(text) for text in texts)
        keys = np.arange(start, start + len(texts), dtype=np.int64)
        return _tensors().from_numpy(keys.reshape(-1, 1))

    def encode_image(self, images):
        """Embed a batch of :meth:`transform` outputs.

        Parameters
        ----------
        images : torch.Tensor of shape (n_images, height, width, 3)
            Stacked outputs of :meth:`transform`.

        Returns
        -------
        torch.Tensor of shape (n_images, embedding_dim), float32
            Unit-length image embeddings.
        """
        arrays = list(images.detach().cpu().numpy())
        embeddings = self.handle._embed_image_batch(arrays, True)
        return _tensors().from_numpy(np.asarray(embeddings, dtype=np.float32))

    def encode_text(self, tokens):
        """Embed the texts whose keys :meth:`tokenizer` gave.

        Parameters
        ----------
        tokens : torch.Tensor
            Keys from :meth:`tokenizer`.

        Returns
        -------
        torch.Tensor of shape (n_texts, embedding_dim), float32
            Unit-length text embeddings.
        """
        keys = tokens.detach().cpu().numpy().reshape(-1)
        texts = [self._texts[int(key)] for key in keys]
        embeddings = self.handle.encode_texts(texts)
        return _tensors().from_numpy(np.asarray(embeddings, dtype=np.float32))

    # What harnesses call on a PyTorch module: the handle already runs
    # where it was loaded, in inference mode.
    def eval(self):
        """Return the model itself: it always runs in inference mode.

        Returns
        -------
        BenchmarkModel
            ``self``.
        """
        return self

    def to(self, *args, **kwargs):
        """Return the model itself: it runs where it was loaded.

        Parameters
        ----------
        *args, **kwargs
            Ignored (a device or dtype, as PyTorch modules take them).

        Returns
        -------
        BenchmarkModel
            ``self``.
        """
        return self


def benchmark_model(model_name, pretrained=None, cache_dir=None, device="auto", *,
                    dtype="auto"):  # fmt: skip
    """Make ``(model, transform, tokenizer)`` for CLIP_benchmark and the like.

    The signature is that of CLIP_benchmark's model loaders, so that it can
    be registered as one (``clip_benchmark.models.TYPE2FUNC``).

    Parameters
    ----------
    model_name : str, os.PathLike, handle or fitted CLIPContrastiveFinetuner
        A hub id, a folder (a checkpoint or an export), a loaded handle, or a
        fitted fine-tuner (its tuned model).
    pretrained, cache_dir : optional
        Accepted for CLIP_benchmark's loader signature; not used (the model
        and the package's caches say where the weights are).
    device : str, default="auto"
        Where a PyTorch model runs.
    dtype : {"auto", "float32", "bfloat16", "float16"}, default="auto"
        The weights' precision, as for :func:`~sklearn_clip.load_model`.

    Returns
    -------
    model : BenchmarkModel
        ``encode_image`` and ``encode_text``, as CLIP-like models have them.
    transform : callable
        ``transform(PIL image) -> uint8 tensor``; a data loader batches them.
    tokenizer : callable
        ``tokenizer(list of str) -> tensor`` for ``model.encode_text``.

    Examples
    --------
    >>> from PIL import Image
    >>> from sklearn_clip.evaluate import benchmark_model
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> model, transform, tokenizer = benchmark_model(make_tiny_clip(), dtype="float32")
    >>> pixels = transform(Image.new("RGB", (40, 30), "red"))
    >>> tuple(model.encode_image(pixels[None]).shape)
    (1, 32)
    """
    handle = resolve_model(model_name, device=device, dtype=dtype)
    adapter = BenchmarkModel(handle)
    return adapter, adapter.transform, adapter.tokenizer
