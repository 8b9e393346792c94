"""What ``fit`` checks and prepares before training.

:class:`~sklearn_clip.CLIPContrastiveFinetuner` trains on (image, caption)
pairs; these helpers turn its ``y`` into one caption per image (through
``caption_template`` when ``y`` holds labels), refuse what would train on
nonsense (a missing label, captions that are all the same, a family that
cannot be fine-tuned), check that a resume request can be honoured, draw the
seed every rank shares, decide what validation holds out and turn the
estimator's parameters into the loop's
:class:`~sklearn_clip._train.schedule.TrainingConfig`. Each check raises before
any image is decoded, naming the row and the fix.
"""

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_consistent_length

from sklearn_clip._backends.torch.precision import dtype_name, training_autocast_dtype
from sklearn_clip._classify.prompts import check_template
from sklearn_clip._encoding.inputs import as_rows, check_texts, row_label
from sklearn_clip._models.families import FINETUNE_FAMILIES, family_of
from sklearn_clip._train.schedule import TrainingConfig


def training_captions(y, n_rows, *, template, on_error):
    """One caption per image; None for a missing one under ``on_error="skip"``.

    Parameters
    ----------
    y : array-like of shape (n_rows,)
        Captions, or class labels when ``template`` is given.
    n_rows : int
        The number of images they pair with.
    template : str or None
        ``caption_template``: turns each label into a caption.
    on_error : {"raise", "skip"}
        ``"skip"`` leaves a missing caption as None (the pair is left out
        later, with the unreadable images); ``"raise"`` refuses it.

    Returns
    -------
    list of str or None
    """
    y = _numbers_as_labels(y, template)
    if y is None or on_error == "raise":
        captions = captions_of(y, template)
        check_consistent_length(np.arange(n_rows), captions)
        return captions
    values, _ = as_rows(y, kind="text")
    check_consistent_length(np.arange(n_rows), values)
    present = [p for p, value in enumerate(values) if not _is_missing(value)]
    captions = [None] * len(values)
    for position, caption in zip(
        present, captions_of([values[p] for p in present], template)
    ):
        captions[position] = caption
    return captions


def captions_of(y, template):
    """``y`` as a list of caption strings, through ``template`` if any."""
    if y is None:
        raise ValueError(
            "fit requires y to be passed, but the target y is None: give the "
            "caption of each image, or its label with caption_template"
        )
    rows, index = as_rows(_numbers_as_labels(y, template), kind="text")
    if template is None:
        return check_texts(rows, index)
    template = check_template(template)
    return [template.format(label) for label in _check_labels(rows, index)]


def _numbers_as_labels(y, template):
    """Numeric class labels as objects, which ``template`` names (2 -> "a 2")."""
    if template is not None and y is not None and np.asarray(y).dtype.kind in "biuf":
        return np.asarray(y, dtype=object)
    return y


def _check_labels(rows, index):
    """Class labels for ``caption_template``: missing or blank ones raise.

    A missing label would otherwise become a caption such as "a None shape"
    and be trained on without a word.
    """
    for position, label in enumerate(rows):
        blank = isinstance(label, str) and not label.strip()
        if blank or _is_missing(label):
            raise ValueError(
                f"the label of {row_label(position, index)} is missing "
                f"({label!r}); every label must be given with caption_template. "
                "Drop the unlabelled pairs first, e.g. y.dropna()."
            )
    return rows


def _is_missing(value):
    # None, NaN, pd.NA and NaT alike; a container is a value, not missing.
    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


def check_pairs(captions):
    """Refuse fewer than 2 pairs; warn when there is nothing to contrast.

    Parameters
    ----------
    captions : list of str or None
        One per image; None marks a pair that will be left out.
    """
    if len(captions) < 2:
        raise ValueError(
            "contrastive fine-tuning needs at least 2 pairs; got "
            f"n_samples={len(captions)}"
        )
    given = [caption for caption in captions if caption is not None]
    distinct = set(given)
    if len(distinct) == 1:
        warnings.warn(
            f"all {len(given)} captions are the same ({next(iter(distinct))!r}): "
            "a contrastive batch with a single distinct caption has nothing to "
            "contrast, so training learns nothing useful and recall@1 is 1.0 "
            "whatever the model. Give captions (or labels) that differ.",
            UserWarning,
            stacklevel=3,
        )


def check_resume(resume, checkpoint_dir):
    """``resume`` as the training loop takes it: False, True, "auto" or a path.

    Raises
    ------
    ValueError
        When ``resume`` asks for a checkpoint directory that is not given.
    FileNotFoundError
        When ``resume`` is a path that is not a file.
    """
    if isinstance(resume, str) and resume == "auto":
        if checkpoint_dir is None:
            raise ValueError("resume='auto' needs checkpoint_dir")
        return resume
    if isinstance(resume, str | os.PathLike):
        if not Path(resume).is_file():
            raise FileNotFoundError(f"resume={resume!r} is not a checkpoint file")
        return resume
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir to find a checkpoint")
    return bool(resume)


def draw_seed(random_state):
    """An int seed from ``random_state`` (drawn afresh for None)."""
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def check_finetunable(handle):
    """``handle``, or a ValueError when it cannot be fine-tuned."""
    if not handle.trainable:
        raise ValueError(
            f"{handle!r} is an exported {handle.backend!r} model, which runs but "
            "cannot be trained. Fine-tune the PyTorch model it was exported from "
            f"({handle.source_model['source']!r}), then export the result."
        )
    if not family_of(handle.family).finetune:
        raise ValueError(
            f"fine-tuning a {handle.family!r} model is not supported; "
            f"CLIPContrastiveFinetuner trains {', '.join(FINETUNE_FAMILIES)}. "
            "Its embeddings and zero-shot scores work in the other estimators."
        )
    return handle


# What early stopping holds out when validation_fraction is None.
EARLY_STOPPING_FRACTION = 0.1


def validation_share(fraction, n_iter_no_change):
    """The share of pairs to hold out for validation, or None for none.

    ``validation_fraction`` as given; None holds out
    :data:`EARLY_STOPPING_FRACTION` when ``n_iter_no_change`` asks for early
    stopping, which needs held-out pairs, and none otherwise: a split costs
    the training its pairs and each epoch a validation pass.

    Examples
    --------
    >>> from sklearn_clip._train.fit_inputs import validation_share
    >>> validation_share(None, None), validation_share(None, 3)
    (None, 0.1)
    >>> validation_share(0.2, None)
    0.2
    """
    if fraction is None and n_iter_no_change is not None:
        return EARLY_STOPPING_FRACTION
    return fraction


def training_config(params, seed, handle):
    """The loop's :class:`TrainingConfig` from the estimator's parameters.

    Parameters
    ----------
    params : dict
        ``get_params()`` of the fine-tuner.
    seed : int
        The seed every rank shares (see :func:`draw_seed`).
    handle : ModelHandle
        The starting model: its device, and its width, decide the autocast.

    Returns
    -------
    TrainingConfig
    """
    autocast = training_autocast_dtype(handle.device, params["dtype"], handle.model)
    max_grad_norm = params["max_grad_norm"]
    return TrainingConfig(
        learning_rate=float(params["learning_rate"]),
        weight_decay=float(params["weight_decay"]),
        max_epochs=int(params["max_epochs"]),
        batch_size=int(params["batch_size"]),
        warmup_fraction=float(params["warmup_fraction"]),
        gradient_accumulation_steps=int(params["gradient_accumulation_steps"]),
        max_grad_norm=None if max_grad_norm is None else float(max_grad_norm),
        train_parts=params["train_parts"],
        lora=params["lora"],
        n_iter_no_change=params["n_iter_no_change"],
        seed=seed,
        autocast=None if autocast is None else dtype_name(autocast),
    )
