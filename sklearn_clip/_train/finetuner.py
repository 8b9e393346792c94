"""CLIPContrastiveFinetuner: contrastive fine-tuning as a scikit-learn estimator.

The estimator's parameters and ``fit``. What ``fit`` checks and prepares first
is in :mod:`~sklearn_clip._train.fit_inputs`, the training loop in
:mod:`~sklearn_clip._train.loop`, and what a fitted fine-tuner offers
(``model_`` at the current ``wise_alpha``, ``transform``, ``score``,
``save_pretrained``) in :mod:`~sklearn_clip._train.tuned`.
"""

import os
from numbers import Integral, Real

from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from sklearn_clip._backends.torch.handle import DEFAULT_MODEL
from sklearn_clip._backends.torch.precision import dtype_name
from sklearn_clip._backends.torch.weights import resolve_device
from sklearn_clip._base import CLIPEstimatorBase, fill_doc
from sklearn_clip._options import PAIR_ON_ERROR_OPTIONS
from sklearn_clip._train import distributed as dist
from sklearn_clip._train.fit_inputs import (
    check_finetunable,
    check_pairs,
    check_resume,
    draw_seed,
    training_captions,
    training_config,
    validation_share,
)
from sklearn_clip._train.loop import train
from sklearn_clip._train.pairs import prepare_pairs, split_validation
from sklearn_clip._train.tuned import TunedModelMixin
from sklearn_clip._train.wise import check_wise_alpha
from sklearn_clip.exceptions import NonFiniteLossError


@fill_doc
class CLIPContrastiveFinetuner(
    TunedModelMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    CLIPEstimatorBase,
):
    """Fine-tune a CLIP-family model contrastively on (image, caption) pairs.

    Both encoders learn to place each image next to its own caption and away
    from the other captions of the batch, with CLIP's symmetric contrastive
    loss (or SigLIP's sigmoid loss for SigLIP-style models) and a learnable
    temperature. Class labels can stand in for captions: with
    ``caption_template="a photo of a {}."`` each label becomes a prompt (as in
    FLYP), and the tuned model then classifies with the same prompts through
    :class:`~sklearn_clip.CLIPZeroShotClassifier`. Captions that are equal
    within a batch are never treated as negatives of each other.

    The starting model is never modified: training works on a copy, and
    ``model_`` is a new handle that the other estimators accept as ``model=``.

    Parameters
    ----------
    {model}
    learning_rate : float, default=1e-5
        Peak learning rate of AdamW, reached after the warmup. 1e-5 suits
        pretrained CLIP; a model trained from random weights needs about 1e-3.
    weight_decay : float, default=0.1
        AdamW weight decay, applied to weight matrices only (not to biases,
        norms or the temperature).
    max_epochs : int, default=10
        Passes over the training pairs.
    batch_size : int, default=32
        Pairs per contrastive batch: each image is contrasted with the other
        captions of its batch, so larger batches give a harder task. A last
        batch of one pair joins the one before it. Under ``torchrun`` this is
        the global batch: each of the ``WORLD_SIZE`` processes takes an even
        share of it, and the result equals a single-process run.
    warmup_fraction : float, default=0.1
        Share of the optimizer steps over which the learning rate rises
        linearly from 0; it then follows a cosine down to 0.
    gradient_accumulation_steps : int, default=1
        Micro-batches whose gradients are averaged into one optimizer step.
        This saves memory, but each micro-batch is still contrasted only with
        itself: it is not the same as a larger ``batch_size``.
    max_grad_norm : float or None, default=1.0
        Clip the gradients' global norm to this value; None does not clip.
    train_parts : {"all", "lock_image", "lock_text", "projections"}, default="all"
        What trains: both towers; the text tower only, with the image tower
        locked (LiT); the image tower only; or only the projection layers that
        map each tower into the shared space. The temperature always trains.
    lora : int, dict or None, default=None
        Train low-rank adapters (LoRA, through ``peft``) instead of the full
        weights of the towers ``train_parts`` leaves unlocked. An int is the
        rank; a dict is passed to ``peft.LoraConfig`` (defaults: ``lora_alpha``
        equal to the rank, no dropout, the attention and MLP layers). The
        adapters are merged into the weights after training. Needs
        ``pip install sklearn-clip[lora]``.
    wise_alpha : float, default=1.0
        WiSE-FT mixing weight: ``model_`` holds ``(1 - wise_alpha) * start +
        wise_alpha * tuned`` weights. 1 is the tuned model, 0 the starting
        one; values between often keep most of the starting model's zero-shot
        ability and most of the gain. Change it with ``set_params`` after
        fitting, without retraining.
    caption_template : str or None, default=None
        With a template such as ``"a photo of a {}."``, ``y`` holds class
        labels and each becomes a caption; None means ``y`` holds captions.
    validation_fraction : float or None, default=None
        Share of the pairs held out to compute the validation loss and
        image-to-text recall@1 after each epoch. None holds out 0.1 when
        ``n_iter_no_change`` is set (early stopping needs it) and none
        otherwise, so every pair trains. No split is made when it would leave
        fewer than 2 pairs on a side (with a warning).
    n_iter_no_change : int or None, default=None
        Stop after this many epochs without a better validation recall@1
        (ties broken by the validation loss), and keep the weights of the
        best epoch. None trains ``max_epochs`` epochs and keeps the last.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split, the batch order and the adapters'
        initialisation. On CPU, an int gives identical weights on every run.
    checkpoint_dir : str, os.PathLike or None, default=None
        Directory where a checkpoint is written after every epoch and on
        interruption, in a subdirectory of the run's own (named by a hash of
        its parameters, data and starting weights), where the newest two are
        kept; other runs' files are never touched. Each is written to a
        temporary file and renamed, so a crash never leaves a partial
        checkpoint. Under ``torchrun`` only rank 0 writes.
    resume : bool, "auto", str or os.PathLike, default=False
        True continues the run from its newest readable checkpoint in
        ``checkpoint_dir`` (an unreadable newest file is passed over with a
        warning); ``"auto"`` does the same when there is one and starts a new
        run otherwise; a path continues from that checkpoint. The parameters,
        data and starting weights must be those of the run that wrote it.
    on_error : {"raise", "skip"}, default="raise"
        What an unusable pair does (an image that cannot be read, a missing
        caption): ``"raise"`` raises before any training, naming the row and
        the path; ``"skip"`` leaves it out, warns once with the count (an
        :class:`~sklearn_clip.exceptions.InputErrorWarning`) and records it in
        ``input_errors_``.
    pairs_dir : str, os.PathLike or None, default=None
        Where the decoded training images are written for the length of
        ``fit`` (a ``uint8`` file of ``n * height * width * 3`` bytes, read
        batch by batch); None uses the system's temporary directory.
    encode_batch_size : int, default=64
        Rows per forward pass in ``transform`` and ``score``; it does not
        change their results.
    {device}
    {dtype}
    {revision}
    {store_weights_in_pickle}
    {progress}
    verbose : int, default=0
        Print one line per epoch when positive.

    Attributes
    ----------
    model_ : ModelHandle
        The fine-tuned model (mixed with the starting one by ``wise_alpha``),
        usable as ``model=`` of the other estimators.
    history_ : list of dict
        One dict per epoch: ``epoch``, ``train_loss``, ``val_loss``,
        ``val_recall_at_1`` (NaN without validation), ``learning_rate`` (at
        the last step), ``logit_scale``, ``grad_norm`` (mean before clipping)
        and ``seconds``.
    n_iter_ : int
        Epochs trained (fewer than ``max_epochs`` after early stopping or an
        interruption).
    interrupted_ : bool
        Whether training was stopped by ``KeyboardInterrupt`` (Ctrl-C).
    checkpoint_ : str or None
        The newest checkpoint written, if any.
    dtype_ : str
        The precision ``model_`` runs at (``"float32"``, ``"bfloat16"`` or
        ``"float16"``): what ``dtype`` resolved to.
    training_dtype_ : str
        The precision of the training's forward and backward passes:
        ``"bfloat16"`` under autocast, else ``"float32"``.
    input_errors_ : list of dict
        With ``on_error="skip"``: one record per pair left out (``position``,
        ``index``, ``source``, ``error``, ``message``), the ``errors`` of
        the :class:`~sklearn_clip.exceptions.InputErrorWarning` that ``fit``
        gives.

    See Also
    --------
    CLIPZeroShotClassifier : Classify with the tuned model and prompts.
    CLIPEmbeddingTransformer : Embeddings from the tuned model as features.

    Notes
    -----
    Images are decoded once per ``fit``, at the model's input resolution, into
    a ``uint8`` file on disk (150 kB a pair at 224 pixels) that is read batch
    by batch, so memory is bounded by a few batches, not by the data.

    Under ``torchrun`` (or with ``torch.distributed`` initialised), every
    process calls ``fit`` with the same data and parameters; gradients are
    reduced over the processes (gloo on CPU, NCCL on GPU), validation is
    computed once over them, and rank 0 alone writes checkpoints and shows
    progress. Each process decodes the pairs itself. ``fit`` leaves the process
    group it joined when it returns; a group initialised before ``fit`` stays
    (whoever initialises it destroys it), so a script that needs the ranks
    after ``fit`` (to save on rank 0 only, say) initialises it first.

    Training keeps float32 master weights, starting from the checkpoint's own
    float32 weights even where inference runs in bfloat16. With
    ``dtype="float32"`` it runs in float32 throughout; with ``"auto"`` it
    autocasts to bfloat16 on GPUs that support it, and on CPUs with native
    bfloat16 units only for models at least 768 wide (ViT-B and larger),
    where that measured faster (see :func:`~sklearn_clip.set_config` for
    forcing one precision). ``training_dtype_`` records the choice, and
    ``model_`` holds the weights in ``dtype`` (``dtype_``) with the float32
    ones kept for :meth:`save_pretrained`. A loss or gradient that is
    not finite stops training with a ``FloatingPointError`` that names the
    epoch and step; the estimator is still fitted, with the weights of the
    last good step. Ctrl-C stops training cleanly: the estimator is fitted
    with the model trained so far, ``interrupted_`` is True, and a checkpoint
    is written when ``checkpoint_dir`` is set.

    Examples
    --------
    >>> from sklearn_clip import CLIPContrastiveFinetuner
    >>> from sklearn_clip.datasets import make_shapes
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> data = make_shapes(16, image_size=30, random_state=0)
    >>> tuner = CLIPContrastiveFinetuner(
    ...     make_tiny_clip(), learning_rate=1e-3, max_epochs=2, batch_size=8,
    ...     caption_template="a {} shape", random_state=0,
    ... ).fit(data.images, data.color)
    >>> len(tuner.history_), tuner.transform(data.images[:3]).shape
    (2, (3, 32))
    >>> 0 <= tuner.score(data.images, data.color) <= 1
    True
    """

    _parameter_constraints = {
        **CLIPEstimatorBase._parameter_constraints,
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "warmup_fraction": [Interval(Real, 0, 1, closed="left")],
        "gradient_accumulation_steps": [Interval(Integral, 1, None, closed="left")],
        "max_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
        "train_parts": [StrOptions({"all", "lock_image", "lock_text", "projections"})],
        "lora": [Interval(Integral, 1, None, closed="left"), dict, None],
        "wise_alpha": [Interval(Real, 0, 1, closed="both")],
        "caption_template": [str, None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "checkpoint_dir": [str, os.PathLike, None],
        "resume": ["boolean", str, os.PathLike],
        "on_error": [StrOptions(set(PAIR_ON_ERROR_OPTIONS))],
        "pairs_dir": [str, os.PathLike, None],
        "encode_batch_size": [Interval(Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        learning_rate=1e-5,
        weight_decay=0.1,
        max_epochs=10,
        batch_size=32,
        warmup_fraction=0.1,
        gradient_accumulation_steps=1,
        max_grad_norm=1.0,
        train_parts="all",
        lora=None,
        wise_alpha=1.0,
        caption_template=None,
        validation_fraction=None,
        n_iter_no_change=None,
        random_state=None,
        checkpoint_dir=None,
        resume=False,
        on_error="raise",
        pairs_dir=None,
        encode_batch_size=64,
        device="auto",
        dtype="auto",
        revision=None,
        store_weights_in_pickle=False,
        progress=False,
        verbose=0,
    ):
        self.model = model
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.warmup_fraction = warmup_fraction
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.max_grad_norm = max_grad_norm
        self.train_parts = train_parts
        self.lora = lora
        self.wise_alpha = wise_alpha
        self.caption_template = caption_template
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.on_error = on_error
        self.pairs_dir = pairs_dir
        self.encode_batch_size = encode_batch_size
        self.device = device
        self.dtype = dtype
        self.revision = revision
        self.store_weights_in_pickle = store_weights_in_pickle
        self.progress = progress
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fine-tune on images ``X`` paired with captions (or labels) ``y``.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Images: paths, bytes, PIL images or arrays, or an ``(n, H, W, 3)``
            array.
        y : array-like of shape (n_samples,)
            The caption of each image; or, with ``caption_template``, its
            class label.

        Returns
        -------
        self : CLIPContrastiveFinetuner
            The fitted estimator.
        """
        rows, index = self._validate_rows(X, kind="image", reset=True)
        captions = training_captions(
            y, len(rows), template=self.caption_template, on_error=self.on_error
        )
        check_pairs(captions)
        resume = check_resume(self.resume, self.checkpoint_dir)
        # Under torchrun, fit is in the process group while it trains (and on
        # CUDA picks this rank's GPU before the model is loaded onto "the"
        # GPU); it leaves the group after only if it was the one to join it.
        with dist.process_group(resolve_device(self.device)):
            handle = check_finetunable(self._get_model(reset=True))
            data, self.input_errors_ = prepare_pairs(
                handle,
                rows,
                index,
                captions,
                on_error=self.on_error,
                directory=self.pairs_dir,
            )
            try:
                self._train(handle, data, resume)
            finally:
                data.store.close()
        return self

    def _train(self, handle, data, resume):
        """Train on the decoded pairs and set the fitted attributes."""
        # Every rank must split and shuffle alike, even with random_state=None.
        seed = dist.broadcast_object(draw_seed(self.random_state))
        fraction = validation_share(self.validation_fraction, self.n_iter_no_change)
        train_data, val_data = split_validation(data, fraction, seed)
        # For the model card that save_pretrained writes.
        self._pair_counts = {
            "train": len(train_data),
            "validation": 0 if val_data is None else len(val_data),
        }
        config = training_config(self.get_params(), seed, handle)
        try:
            result = train(
                handle,
                train_data,
                val_data,
                config,
                checkpoint_dir=self.checkpoint_dir,
                resume=resume,
                verbose=self.verbose,
                progress=self.progress,
            )
        except NonFiniteLossError as error:
            # Still fitted, with the last good weights, so nothing is lost.
            self._set_fitted(handle, error.result, config)
            raise
        self._set_fitted(handle, result, config)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True  # captions or labels
        return tags

    def _set_fitted(self, handle, result, config):
        # The float32 trained weights stay the master copy of a bfloat16 model_.
        self._tuned = handle.with_model(result.model)
        self.dtype_ = dtype_name(handle.dtype)
        self.training_dtype_ = config.autocast or "float32"
        self.history_ = result.history
        self.n_iter_ = len(result.history)
        self.interrupted_ = result.interrupted
        self.checkpoint_ = result.checkpoint
        self._n_features_out = self._tuned.embedding_dim
        self._mixed = (1.0, self._tuned)
        self._model_at(check_wise_alpha(self.wise_alpha))
