"""What a fitted fine-tuner offers: its tuned model, at the current ``wise_alpha``.

:class:`TunedModelMixin` gives :class:`~sklearn_clip.CLIPContrastiveFinetuner`
everything that uses the result of ``fit``: ``model_`` (the tuned weights
mixed with the starting ones by ``wise_alpha``, see
:mod:`~sklearn_clip._train.wise`), ``transform``, ``score``,
``save_pretrained`` and ``plot_history``. None of them writes a fitted
attribute; the only state they keep is the last WiSE-FT mix, a private cache.
"""

import os

import numpy as np
from sklearn.utils.validation import check_consistent_length, check_is_fitted

from sklearn_clip._backends.interface import EncoderHandle
from sklearn_clip._encoding.inputs import as_rows, check_texts
from sklearn_clip._folders import save_model_folder
from sklearn_clip._train.fit_inputs import captions_of
from sklearn_clip._train.history import plot_history
from sklearn_clip._train.model_card import model_card
from sklearn_clip._train.wise import check_wise_alpha, mix_handles
from sklearn_clip.metrics import recall_at_k


class TunedModelMixin:
    """The fitted fine-tuner's model in use; mixed into the estimator class."""

    @property
    def model_(self):
        """The tuned model, mixed with the starting one by ``wise_alpha``."""
        check_is_fitted(self, "history_")
        return self._model_at(check_wise_alpha(self.wise_alpha))

    def _model_at(self, alpha):
        """The model at ``alpha``; the last mix is kept, as mixing copies weights.

        This is the one place ``wise_alpha`` takes effect, whether it was given
        to ``__init__``, to ``set_params`` or assigned directly.
        """
        kept_alpha, model = self._mixed
        if alpha != kept_alpha:
            model = mix_handles(self._get_model, self._tuned, alpha)
            self._mixed = (alpha, model)
        return model

    def set_params(self, **params):
        """Set parameters; a fitted model refuses a ``wise_alpha`` outside [0, 1].

        A new ``wise_alpha`` takes effect in ``model_`` without refitting.

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : CLIPContrastiveFinetuner
            This estimator.
        """
        if "_tuned" in self.__dict__ and "wise_alpha" in params:
            check_wise_alpha(params["wise_alpha"])  # before anything is set
        return super().set_params(**params)

    def __setstate__(self, state):
        # Estimators pickled before model_ became a property kept the mix, and
        # the weight it was mixed at, as attributes of their own.
        if "model_" in state:
            state["_mixed"] = (state.pop("_model_alpha", 1.0), state.pop("model_"))
        super().__setstate__(state)

    # -- using the tuned model ------------------------------------------------------
    def transform(self, X, modality="image"):
        """Embed images (or texts) with the tuned encoders.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Images, or texts with ``modality="text"``.
        modality : {"image", "text"}, default="image"
            Which encoder to use.

        Returns
        -------
        ndarray of shape (n_samples, embedding_dim), dtype float32
            Unit-length embeddings, one per row, in order.
        """
        handle = self.model_
        if modality == "image":
            rows, index = self._validate_rows(X, kind="image", reset=False)
            return handle.encode_images(
                rows, batch_size=self.encode_batch_size, progress=self.progress
            )
        if modality == "text":
            rows, index = as_rows(X, kind="text")
            return handle.encode_texts(
                check_texts(rows, index), batch_size=self.encode_batch_size
            )
        raise ValueError(f"modality must be 'image' or 'text'; got {modality!r}")

    def score(self, X, y):
        """Image-to-text recall@1 over the given pairs (higher is better).

        For each image, the most similar of the distinct captions in ``y`` is
        its prediction; it is correct when it equals the image's own caption,
        so images sharing a caption (or a label) can all be correct. With
        ``caption_template``, this is the accuracy of zero-shot classification
        over the labels in ``y`` with that prompt.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Images.
        y : array-like of shape (n_samples,)
            Their captions, or labels with ``caption_template``.

        Returns
        -------
        float
            The share of images whose best caption is their own.
        """
        handle = self.model_
        rows, _ = self._validate_rows(X, kind="image", reset=False)
        captions = captions_of(y, self.caption_template)
        check_consistent_length(rows, captions)
        distinct, ids = np.unique(
            np.asarray(captions, dtype=object), return_inverse=True
        )
        images = handle.encode_images(rows, batch_size=self.encode_batch_size)
        texts = handle.encode_texts(list(distinct), batch_size=self.encode_batch_size)
        return recall_at_k(images, texts, ids.reshape(-1), k=1)

    def save_pretrained(self, path):
        """Write the tuned model (safetensors) where ``load_model`` reads it.

        A model card (``README.md``, as transformers writes one) goes beside
        the weights: the base model, the training data's size, the settings,
        the validation results and the library versions. The layout is always
        transformers' own, also for a model loaded from an open_clip
        checkpoint.

        The folder is written beside ``path`` and swapped in once complete.
        ``path`` may be new, an empty folder, or a folder this method wrote
        before (which is replaced whole); never another folder, the model it
        was tuned from (or a folder holding it), ``checkpoint_dir`` (or a
        folder holding it) or the current directory. The check runs before
        anything is written.

        Parameters
        ----------
        path : str or os.PathLike
            A directory, created if needed.

        Returns
        -------
        pathlib.Path
            The directory, readable by :func:`~sklearn_clip.load_model`, by
            every estimator's ``model=`` and by ``transformers``'
            ``from_pretrained``.

        Raises
        ------
        ValueError
            ``path`` must not be replaced; the message names it and the fix.
        """
        check_is_fitted(self, "history_")
        model = self.model_

        def write(folder):
            model._write_files(folder)
            (folder / "README.md").write_text(model_card(self), encoding="utf-8")

        return save_model_folder(
            path, write, sources=self._source_folders(), keep=(self.checkpoint_dir,)
        )

    def _source_folders(self):
        """The folders the starting weights are read from (None where unknown)."""
        handle = self.__dict__.get("_handle")
        return (
            self.model if isinstance(self.model, (str, os.PathLike)) else None,
            self.model.folder if isinstance(self.model, EncoderHandle) else None,
            handle.folder if handle is not None else None,
        )

    def plot_history(self, ax=None):
        """Plot the training and validation loss, and validation recall@1.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; None makes a new figure.

        Returns
        -------
        matplotlib.axes.Axes
            The axes of the losses; recall@1 is on a twin axis on the right.
        """
        check_is_fitted(self, "history_")
        return plot_history(self.history_, ax)
