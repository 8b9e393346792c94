"""One contrastive training loop, readable top to bottom.

:func:`train` copies the model, trains the copy on (image, caption) pairs and
returns it; the model it was given is never touched. The run happens here, in
the order it happens: AdamW with weight decay on matrices only, a linear warmup
and cosine schedule, gradient accumulation, clipping, bfloat16 autocast on
GPUs, the clamped temperature, validation and early stopping on recall@1,
atomic checkpoints and resuming from them. Which parameters train (all, a
locked tower, the projections, or LoRA adapters) is
:mod:`sklearn_clip._trainable`'s business, and the checkpoint files
:mod:`sklearn_clip._checkpoints`'.

Failures are part of the loop too. A non-finite loss or gradient is never
applied: training stops with :class:`NonFiniteLossError`, which carries the
model as of the last good step. Ctrl-C (``KeyboardInterrupt``) ends the run at
once, keeps what was trained so far, writes a checkpoint and warns.

Images are decoded once per fit, at the model's resolution, into one ``uint8``
array (``n * height * width * 3`` bytes: 150 kB a pair at 224 pixels).
"""

import hashlib
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sklearn_clip import _distributed as dist
from sklearn_clip._checkpoints import (
    CHECKPOINT_FORMAT,
    check_signature,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    run_signature,
    save_checkpoint,
    set_rng_state,
)
from sklearn_clip._encode import iter_prepared_batches, tokenize
from sklearn_clip._forward import image_features, text_features
from sklearn_clip._images import normalize_batch
from sklearn_clip._losses import contrastive_loss, sigmoid_loss
from sklearn_clip._precision import autocast_dtype
from sklearn_clip._trainable import build_trainable, parameter_groups

# open_clip's ceiling on the temperature: logits at most 100 x cosine.
MAX_LOGIT_SCALE = math.log(100)


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or infinite loss or gradient and stopped.

    ``result`` is a :class:`TrainingResult` holding finite weights: those of
    the last good step.
    """

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result


@dataclass
class PairedData:
    """Decoded training pairs: images at the model's resolution, caption ids."""

    pixels: np.ndarray  # (n, height, width, 3) uint8
    caption_ids: np.ndarray  # (n,) int64, index into `captions`
    captions: list  # the distinct captions

    def __len__(self):
        return len(self.caption_ids)

    def subset(self, rows):
        """The pairs at ``rows``, with captions renumbered to those present."""
        distinct, ids = np.unique(self.caption_ids[rows], return_inverse=True)
        return PairedData(
            self.pixels[rows],
            ids.astype(np.int64),
            [self.captions[i] for i in distinct],
        )

    def fingerprint(self):
        """A short hash of the data, to refuse resuming a run on other data."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(np.ascontiguousarray(self.pixels).data)
        digest.update(self.caption_ids.tobytes())
        digest.update("\0".join(self.captions).encode())
        return digest.hexdigest()


def prepare_pairs(handle, rows, index, captions, *, n_workers=None):
    """Decode every image once (threaded) and number the distinct captions."""
    height, width = handle.image_config.output_size
    pixels = np.empty((len(rows), height, width, 3), np.uint8)
    batches = iter_prepared_batches(
        rows,
        index,
        handle.image_config,
        batch_size=64,
        on_error="raise",
        n_workers=n_workers,
    )
    for start, arrays in batches:
        pixels[start : start + len(arrays)] = np.stack(arrays)
    distinct, ids = np.unique(np.asarray(captions, dtype=object), return_inverse=True)
    return PairedData(pixels, ids.astype(np.int64), [str(c) for c in distinct])


def split_validation(data, fraction, seed):
    """Hold out ``fraction`` of the pairs; no split when either side is tiny."""
    if fraction is None:
        return data, None
    n_val = math.ceil(fraction * len(data))
    if n_val < 2 or len(data) - n_val < 2:
        warnings.warn(
            f"validation_fraction={fraction} of {len(data)} pairs leaves too few "
            "pairs on one side (at least 2 each are needed); training on all "
            "pairs without validation.",
            UserWarning,
            stacklevel=3,
        )
        return data, None
    order = np.random.default_rng([seed, 1]).permutation(len(data))
    return data.subset(np.sort(order[n_val:])), data.subset(np.sort(order[:n_val]))


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides the trained weights (a checkpoint records it)."""

    learning_rate: float = 1e-5
    weight_decay: float = 0.1
    max_epochs: int = 10
    batch_size: int = 32
    warmup_fraction: float = 0.1
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0
    train_parts: str = "all"
    lora: int | dict | None = None
    n_iter_no_change: int | None = None
    seed: int = 0


@dataclass
class TrainingResult:
    """What :func:`train` hands back."""

    model: torch.nn.Module
    history: list
    n_steps: int
    interrupted: bool = False
    best_epoch: int | None = None
    checkpoint: str | None = None


@dataclass
class _Progress:
    """Where the run is; saved in each checkpoint and restored on resume."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # micro-batches of the current epoch already applied
    step: int = 0  # optimizer steps taken
    loss_sum: float = 0.0  # over the current epoch's micro-batches
    grad_norm_sum: float = 0.0  # over the current epoch's steps
    epoch_steps: int = 0
    seconds: float = 0.0  # spent on the current epoch before an interruption
    history: list = field(default_factory=list)
    best: tuple | None = None  # (val recall@1, -val loss) of the best epoch
    best_epoch: int | None = None
    bad_epochs: int = 0
    finished: bool = False


def lr_multiplier(step, warmup_steps, total_steps):
    """Linear warmup to 1, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


# -- batches, embeddings, loss -------------------------------------------------
def epoch_batches(n, batch_size, seed, epoch, shuffle=True):
    """Row indices of each micro-batch of an epoch.

    The order depends only on ``(seed, epoch)``, so a resumed run replays the
    same batches without saving any random state for them.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else None
    order = np.arange(n) if order is None else order
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    # A single pair has nothing to be contrasted with (its loss is exactly 0),
    # so a last batch of one joins the batch before it.
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


def embed_batch(model, handle, data, rows, device):
    """L2-normalised image and text embeddings of ``rows``, and caption ids."""
    pixels = normalize_batch(data.pixels[rows], handle.image_config, device)
    ids = data.caption_ids[rows]
    # Each distinct caption of the batch goes through the text tower once.
    distinct, inverse = np.unique(ids, return_inverse=True)
    input_ids, mask = tokenize(handle, [data.captions[i] for i in distinct])
    images = image_features(model, pixels)
    texts = text_features(model, input_ids.to(device), mask.to(device))
    texts = texts[torch.as_tensor(inverse.reshape(-1), device=device)]
    return (
        F.normalize(images.float(), dim=-1),
        F.normalize(texts.float(), dim=-1),
        torch.as_tensor(ids, device=device),
    )


def batch_loss(model, image_embeds, text_embeds, caption_ids):
    """The loss over the whole batch, gathered from every process."""
    image_embeds, text_embeds, caption_ids = dist.gather_features(
        image_embeds, text_embeds, caption_ids
    )
    scale = model.logit_scale.exp()
    if hasattr(model, "logit_bias"):
        return sigmoid_loss(
            image_embeds, text_embeds, scale, model.logit_bias, caption_ids
        )
    return contrastive_loss(image_embeds, text_embeds, scale, caption_ids)


def recall_at_1(image_embeds, text_embeds, caption_ids):
    """Share of images whose most similar text is their own caption.

    ``text_embeds`` holds one row per distinct caption and ``caption_ids`` the
    row of each image's caption, so an image matched to a duplicate of its
    caption counts as correct.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip._training import recall_at_1
    >>> recall_at_1(np.eye(3), np.eye(3), np.array([0, 1, 1]))
    0.6666666666666666
    """
    similarity = np.asarray(image_embeds) @ np.asarray(text_embeds).T
    return float(np.mean(similarity.argmax(axis=1) == np.asarray(caption_ids)))


@torch.inference_mode()
def evaluate(model, handle, data, batch_size, device, autocast):
    """Validation loss (mean over pairs) and image-to-text recall@1."""
    model.eval()
    total, images = 0.0, []
    for rows in epoch_batches(len(data), batch_size, 0, 0, shuffle=False):
        with autocast:
            image_embeds, text_embeds, ids = embed_batch(
                model, handle, data, rows, device
            )
            total += float(batch_loss(model, image_embeds, text_embeds, ids)) * len(
                rows
            )
        images.append(image_embeds.float().cpu())
    texts = []
    for start in range(0, len(data.captions), batch_size):
        input_ids, mask = tokenize(handle, data.captions[start : start + batch_size])
        with autocast:
            features = text_features(model, input_ids.to(device), mask.to(device))
        texts.append(F.normalize(features.float(), dim=-1).cpu())
    model.train()
    recall = recall_at_1(
        torch.cat(images).numpy(), torch.cat(texts).numpy(), data.caption_ids
    )
    return total / len(data), recall


def _cpu_copy(model):
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _all_finite(model):
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


# -- the loop ------------------------------------------------------------------
def train(
    handle,
    train_data,
    val_data,
    config,
    *,
    checkpoint_dir=None,
    resume=False,
    verbose=0,
    progress=False,
):
    """Fine-tune a copy of ``handle.model`` contrastively; return a TrainingResult.

    Parameters
    ----------
    handle : ModelHandle
        The starting model, its tokenizer and preprocessing; never modified.
    train_data, val_data : PairedData, PairedData or None
        Decoded pairs; without ``val_data`` there is no validation.
    config : TrainingConfig
    checkpoint_dir : str or os.PathLike, default=None
        Where to write a checkpoint after every epoch and on interruption.
    resume : bool, str or os.PathLike, default=False
        True continues from the newest checkpoint in ``checkpoint_dir``; a
        path continues from that file.
    verbose : int, default=0
        Print one line per epoch when positive.
    progress : bool, default=False
        Show a progress bar over each epoch's batches.

    Returns
    -------
    TrainingResult
    """
    device = handle.device
    devices = [device.index or 0] if device.type == "cuda" else []
    # Seeding inside a forked generator makes runs repeatable without
    # changing the caller's global random state.
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        return _train(
            handle,
            train_data,
            val_data,
            config,
            checkpoint_dir,
            resume,
            verbose,
            progress,
        )


def _train(
    handle, train_data, val_data, config, checkpoint_dir, resume, verbose, progress
):
    device = handle.device
    model, peft_model = build_trainable(handle.model, config)
    model.to(device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameter_groups(model, config.weight_decay),
        lr=config.learning_rate,
        betas=(0.9, 0.98),  # CLIP's betas and epsilon
        eps=1e-6,
    )
    # bfloat16 autocast where it is native (GPUs, AMX CPUs); else float32.
    amp = autocast_dtype(device)
    autocast = torch.autocast(
        device.type, dtype=amp or torch.bfloat16, enabled=amp is not None
    )
    accumulate = config.gradient_accumulation_steps
    n_batches = len(epoch_batches(len(train_data), config.batch_size, 0, 0))
    steps_per_epoch = math.ceil(n_batches / accumulate)
    total_steps = steps_per_epoch * config.max_epochs
    warmup_steps = round(config.warmup_fraction * total_steps)
    signature = run_signature(config, train_data, val_data, model)
    main = dist.is_main_process()

    p = _Progress()
    best_model = None
    checkpoint = None
    if resume:
        checkpoint = resume if resume is not True else latest_checkpoint(checkpoint_dir)
        if checkpoint is None:
            raise FileNotFoundError(
                f"resume=True but there is no checkpoint in {checkpoint_dir!r}; "
                "fit with resume=False to start a new run."
            )
        state = load_checkpoint(checkpoint)
        check_signature(state["signature"], signature, checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        p = _Progress(**state["progress"])
        p.best = None if p.best is None else tuple(p.best)
        best_model = state["best_model"]
        set_rng_state(state["rng"], device)

    def write_checkpoint():
        if checkpoint_dir is None or not main:
            return None
        state = {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": {"warmup_steps": warmup_steps, "total_steps": total_steps},
            "progress": asdict(p),
            "best_model": best_model,
            "rng": rng_state(device),
            "signature": signature,
            "versions": {"torch": str(torch.__version__)},
        }
        return save_checkpoint(checkpoint_dir, state)

    if checkpoint_dir is not None and main:
        for stale in Path(checkpoint_dir).glob("*.pt.tmp"):
            stale.unlink(missing_ok=True)

    interrupted = False
    started = time.perf_counter()
    lr = config.learning_rate * lr_multiplier(p.step, warmup_steps, total_steps)
    try:
        while p.epoch < config.max_epochs and not p.finished:
            batches = epoch_batches(
                len(train_data), config.batch_size, config.seed, p.epoch
            )
            started = time.perf_counter() - p.seconds
            bar = tqdm(
                total=len(batches),
                initial=p.batch,
                disable=not (progress and main),
                desc=f"epoch {p.epoch + 1}/{config.max_epochs}",
                unit="batch",
                leave=False,
            )
            while p.batch < len(batches):
                # One optimizer step over `accumulate` micro-batches; the loss
                # of each is divided by their number, so gradients average.
                group = batches[p.batch : p.batch + accumulate]
                group_loss = 0.0
                for rows in group:
                    # With several processes each takes its share of the batch;
                    # gather_features needs the shares to be of equal size.
                    rows = rows[dist.get_rank() :: dist.get_world_size()]
                    with autocast:
                        image_embeds, text_embeds, ids = embed_batch(
                            model, handle, train_data, rows, device
                        )
                        loss = batch_loss(model, image_embeds, text_embeds, ids)
                    # CPU-GPU sync point, once per micro-batch: a non-finite
                    # loss must be caught before it is backpropagated.
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise _NonFinite(f"loss is {value}")
                    (loss / len(group)).backward()
                    group_loss += value
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    trainable, config.max_grad_norm or math.inf
                )
                if not torch.isfinite(grad_norm):
                    raise _NonFinite(f"gradient norm is {float(grad_norm)}")
                lr = config.learning_rate * lr_multiplier(
                    p.step, warmup_steps, total_steps
                )
                for group_ in optimizer.param_groups:
                    group_["lr"] = lr
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
                p.step += 1
                p.batch += len(group)
                p.loss_sum += group_loss
                p.grad_norm_sum += float(grad_norm)
                p.epoch_steps += 1
                bar.update(len(group))
                bar.set_postfix(loss=f"{group_loss / len(group):.4f}")
            bar.close()

            record = {
                "epoch": p.epoch + 1,
                "train_loss": p.loss_sum / max(1, p.batch),
                "val_loss": math.nan,
                "val_recall_at_1": math.nan,
                "learning_rate": lr,
                "logit_scale": float(model.logit_scale.detach().float().exp().mean()),
                "grad_norm": p.grad_norm_sum / max(1, p.epoch_steps),
                "seconds": 0.0,
            }
            if val_data is not None:
                val_loss, recall = evaluate(
                    model, handle, val_data, config.batch_size, device, autocast
                )
                record["val_loss"] = dist.mean_over_ranks(val_loss)
                record["val_recall_at_1"] = dist.mean_over_ranks(recall)
                score = (record["val_recall_at_1"], -record["val_loss"])
                if p.best is None or score > p.best:
                    p.best, p.best_epoch, p.bad_epochs = score, p.epoch + 1, 0
                    if config.n_iter_no_change is not None:
                        best_model = _cpu_copy(model)
                else:
                    p.bad_epochs += 1
                    if (
                        config.n_iter_no_change is not None
                        and p.bad_epochs >= config.n_iter_no_change
                    ):
                        p.finished = True
            record["seconds"] = time.perf_counter() - started
            p.history.append(record)
            if verbose > 0 and main:
                print(_describe(record, config.max_epochs), flush=True)
            p.epoch += 1
            p.batch = p.epoch_steps = 0
            p.loss_sum = p.grad_norm_sum = p.seconds = 0.0
            p.finished = p.finished or p.epoch >= config.max_epochs
            checkpoint = write_checkpoint() or checkpoint
    except KeyboardInterrupt:
        # The weights are those of the last completed step; gradients of a
        # half-accumulated step are dropped.
        interrupted = True
        optimizer.zero_grad(set_to_none=True)
        p.seconds = time.perf_counter() - started
        checkpoint = write_checkpoint() or checkpoint
        warnings.warn(
            f"Training interrupted in epoch {p.epoch + 1} after {p.step} optimizer "
            f"steps; keeping the model trained so far"
            + (f" (checkpoint: {checkpoint})." if checkpoint else "."),
            UserWarning,
            stacklevel=3,
        )
    except _NonFinite as error:
        where = f"epoch {p.epoch + 1}, optimizer step {p.step + 1}"
        kept = "the weights of the last good step"
        if not _all_finite(model):
            # An update overflowed: fall back to the newest checkpoint, else to
            # the starting weights.
            if checkpoint is not None:
                model.load_state_dict(load_checkpoint(checkpoint)["model"])
                kept = f"the weights of the checkpoint {checkpoint}"
            else:
                model, peft_model = build_trainable(handle.model, config)
                kept = "the starting weights"
        message = (
            f"Training stopped at {where}: the {error}. The model keeps {kept}"
            + (f"; the last checkpoint is {checkpoint}" if checkpoint else "")
            + ". Lower learning_rate, set max_grad_norm, or check the inputs."
        )
        result = _finish(model, peft_model, p, checkpoint, interrupted=False)
        raise NonFiniteLossError(message, result) from None

    if best_model is not None and not interrupted:
        # Early stopping keeps the epoch that validated best, not the last.
        model.load_state_dict(best_model)
    return _finish(model, peft_model, p, checkpoint, interrupted)


class _NonFinite(Exception):
    """Raised inside the loop; turned into NonFiniteLossError outside it."""


def _finish(model, peft_model, progress, checkpoint, interrupted):
    tuned = peft_model.merge_and_unload() if peft_model is not None else model
    for parameter in tuned.parameters():
        parameter.requires_grad_(False)
    return TrainingResult(
        model=tuned.eval(),
        history=progress.history,
        n_steps=progress.step,
        interrupted=interrupted,
        best_epoch=progress.best_epoch,
        checkpoint=checkpoint,
    )


def _describe(record, max_epochs):
    text = (
        f"epoch {record['epoch']}/{max_epochs}: train loss {record['train_loss']:.4f}"
    )
    if not math.isnan(record["val_loss"]):
        text += (
            f", val loss {record['val_loss']:.4f}, "
            f"val recall@1 {record['val_recall_at_1']:.3f}"
        )
    return text + f", lr {record['learning_rate']:.2e}, {record['seconds']:.1f} s"
