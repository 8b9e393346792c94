"""One contrastive training loop, in named steps, readable top to bottom.

:func:`train` copies the model, trains the copy on (image, caption) pairs and
returns it; the model it was given is never touched. The run is a
:class:`_Run`, whose methods are its steps in the order they happen (as in
skorch's ``fit_loop`` / ``run_single_epoch`` / ``train_step``):

- :meth:`_Run.set_up` builds the trainable copy, AdamW (weight decay on
  matrices only), the warmup-and-cosine schedule and the run signature, and
  resumes from a checkpoint when asked (the state a run holds, and what a
  checkpoint saves of it, are :mod:`sklearn_clip._train.run_state`'s);
- :meth:`_Run.fit_loop` runs the epochs and turns interruptions into results;
- :meth:`_Run.run_single_epoch` walks one epoch's batches, a group of
  ``gradient_accumulation_steps`` micro-batches per step;
- :meth:`_Run.train_step` is one optimiser step: each micro-batch's forward
  and backward (:meth:`_Run.micro_batch`), then :meth:`_Run.update`:
  gradients reduced over processes, clipping, the update, the clamped
  temperature;
- :meth:`_Run.end_epoch` validates, decides early stopping and checkpoints;
- :meth:`_Run.finish` merges LoRA adapters and hands back the model.

Under ``torchrun`` every process runs this same loop over its share of each
batch (see :mod:`sklearn_clip._train.distributed`); only rank 0 writes checkpoints,
logs and progress bars. Which parameters train is
:mod:`sklearn_clip._train.trainable`'s business, the checkpoint files
:mod:`sklearn_clip._train.checkpoints`', the decoded pairs
:mod:`sklearn_clip._train.pairs`'.

Failures are part of the loop too. A non-finite loss or gradient is never
applied: training stops with :class:`NonFiniteLossError`, which carries the
model as of the last good step. Ctrl-C (``KeyboardInterrupt``) ends the run at
once, keeps what was trained so far, writes a checkpoint and warns.
"""

import math
import time
import warnings

import torch
from tqdm.auto import tqdm

from sklearn_clip._backends.torch.forward import logit_scale
from sklearn_clip._models.families import family_of
from sklearn_clip._train import distributed as dist
from sklearn_clip._train.checkpoints import (
    latest_checkpoint,
    load_checkpoint,
    run_directory,
    run_signature,
    save_checkpoint,
)
from sklearn_clip._train.contrastive import (
    batch_loss,
    embed_batch,
    evaluate,
    recall_at_1,
)
from sklearn_clip._train.history import describe_epoch
from sklearn_clip._train.pairs import PairedData, prepare_pairs, split_validation
from sklearn_clip._train.run_state import RunState
from sklearn_clip._train.schedule import (
    TrainingConfig,
    TrainingResult,
    epoch_batches,
    lr_multiplier,
)
from sklearn_clip._train.trainable import build_trainable, parameter_groups
from sklearn_clip.exceptions import NonFiniteLossError

__all__ = [
    "MAX_LOGIT_SCALE",
    "NonFiniteLossError",
    "PairedData",
    "TrainingConfig",
    "TrainingResult",
    "build_trainable",
    "epoch_batches",
    "latest_checkpoint",
    "load_checkpoint",
    "lr_multiplier",
    "parameter_groups",
    "prepare_pairs",
    "recall_at_1",
    "run_directory",
    "run_signature",
    "save_checkpoint",
    "split_validation",
    "train",
]

# open_clip's ceiling on the temperature: logits at most 100 x cosine.
MAX_LOGIT_SCALE = math.log(100)


def _cpu_copy(model):
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _all_finite(model):
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


class _NonFinite(Exception):
    """Raised inside the loop; turned into NonFiniteLossError outside it."""


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
        Where to write a checkpoint after every epoch and on interruption,
        in a subdirectory of this run's own.
    resume : bool, "auto", str or os.PathLike, default=False
        True continues from this run's newest readable checkpoint in
        ``checkpoint_dir``; ``"auto"`` does so if there is one and starts
        otherwise; a path continues from that file.
    verbose : int, default=0
        Print one line per epoch when positive.
    progress : bool, default=False
        Show a progress bar over each epoch's batches.

    Returns
    -------
    TrainingResult
    """
    device = handle.device
    devices = [torch.cuda.current_device()] if device.type == "cuda" else []
    # Seeding inside a forked generator makes runs repeatable without
    # changing the caller's global random state; every rank seeds alike.
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        run = _Run(handle, train_data, val_data, config, checkpoint_dir)
        run.set_up(resume)
        return run.fit_loop(verbose=verbose, progress=progress)


class _Run(RunState):
    """One training run's steps, in the order they happen."""

    # -- the epochs --------------------------------------------------------------
    def fit_loop(self, *, verbose=0, progress=False):
        p, config = self.p, self.config
        self.started = time.perf_counter()
        try:
            while p.epoch < config.max_epochs and not p.finished:
                self.run_single_epoch(progress)
                self.end_epoch(verbose)
        except KeyboardInterrupt:
            return self._interrupted()
        except _NonFinite as error:
            raise self._non_finite(error) from None
        if self.best_model is not None:
            # Early stopping keeps the epoch that validated best, not the last.
            self.model.load_state_dict(self.best_model)
        return self.finish(interrupted=False)

    def run_single_epoch(self, progress):
        p, config = self.p, self.config
        batches = epoch_batches(
            len(self.train_data), config.batch_size, config.seed, p.epoch
        )
        self.started = time.perf_counter() - p.seconds
        bar = tqdm(
            total=len(batches),
            initial=p.batch,
            disable=not (progress and self.main),
            desc=f"epoch {p.epoch + 1}/{config.max_epochs}",
            unit="batch",
            leave=False,
        )
        with bar:
            while p.batch < len(batches):
                group = batches[p.batch : p.batch + config.gradient_accumulation_steps]
                group_loss, grad_norm = self.train_step(group)
                p.step += 1
                p.batch += len(group)
                p.loss_sum += group_loss
                p.grad_norm_sum += grad_norm
                p.epoch_steps += 1
                bar.update(len(group))
                bar.set_postfix(loss=f"{group_loss / len(group):.4f}")

    def train_step(self, group):
        """One optimiser step over a group of micro-batches; its summed loss."""
        group_loss = sum(self.micro_batch(rows, len(group)) for rows in group)
        grad_norm = self.update()
        return group_loss, grad_norm

    def micro_batch(self, rows, group_size):
        """Forward and backward of one micro-batch (this rank's share); its loss."""
        sizes = dist.share_sizes(len(rows))
        with self.autocast:
            image_embeds, text_embeds, ids = embed_batch(
                self.model,
                self.handle,
                self.train_data,
                dist.local_share(rows),
                self.device,
            )
            loss = batch_loss(self.model, image_embeds, text_embeds, ids, sizes)
        # CPU-GPU sync point, once per micro-batch: a non-finite loss must be
        # caught before it is backpropagated.
        value = float(loss.detach())
        if not math.isfinite(value):
            raise _NonFinite(f"loss is {value}")
        # Gradients average over the group's micro-batches.
        (loss / group_size).backward()
        return value

    def update(self):
        """Reduce, clip and apply the gradients; their norm before clipping."""
        dist.all_reduce_gradients(self.trainable, averaged=self.temperature)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.trainable, self.config.max_grad_norm or math.inf
        )
        if not torch.isfinite(grad_norm):
            raise _NonFinite(f"gradient norm is {float(grad_norm)}")
        self.lr = self.learning_rate()
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = self.lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        family = family_of(self.model)
        if family.log_temperature:  # ALIGN stores the temperature itself
            with torch.no_grad():
                getattr(self.model, family.temperature).clamp_(0, MAX_LOGIT_SCALE)
        return float(grad_norm)

    # -- validation, early stopping, checkpoints -----------------------------------
    def end_epoch(self, verbose):
        p, config = self.p, self.config
        record = {
            "epoch": p.epoch + 1,
            "train_loss": p.loss_sum / max(1, p.batch),
            "val_loss": math.nan,
            "val_recall_at_1": math.nan,
            "learning_rate": getattr(self, "lr", self.learning_rate()),
            "logit_scale": float(logit_scale(self.model).detach().float().mean()),
            "grad_norm": p.grad_norm_sum / max(1, p.epoch_steps),
            "seconds": 0.0,
        }
        if self.val_data is not None:
            self.validate(record)
        record["seconds"] = time.perf_counter() - self.started
        p.history.append(record)
        if verbose > 0 and self.main:
            print(describe_epoch(record, config.max_epochs), flush=True)
        p.epoch += 1
        p.batch = p.epoch_steps = 0
        p.loss_sum = p.grad_norm_sum = p.seconds = 0.0
        p.finished = p.finished or p.epoch >= config.max_epochs
        self.write_checkpoint()

    def validate(self, record):
        """Validation metrics into ``record``; early stopping's bookkeeping."""
        p, patience = self.p, self.config.n_iter_no_change
        val_loss, recall = evaluate(
            self.model,
            self.handle,
            self.val_data,
            self.config.batch_size,
            self.device,
            self.autocast,
        )
        record["val_loss"], record["val_recall_at_1"] = val_loss, recall
        score = (recall, -val_loss)
        if p.best is None or score > p.best:
            p.best, p.bad_epochs = score, 0
            if patience is not None:
                self.best_model = _cpu_copy(self.model)
        else:
            p.bad_epochs += 1
            p.finished = patience is not None and p.bad_epochs >= patience

    # -- finishing -----------------------------------------------------------------
    def _interrupted(self):
        # The weights are those of the last completed step; gradients of a
        # half-accumulated step are dropped.
        self.optimizer.zero_grad(set_to_none=True)
        self.p.seconds = time.perf_counter() - self.started
        self.write_checkpoint()
        warnings.warn(
            f"Training interrupted in epoch {self.p.epoch + 1} after {self.p.step} "
            "optimizer steps; keeping the model trained so far"
            + (f" (checkpoint: {self.checkpoint})." if self.checkpoint else "."),
            UserWarning,
            stacklevel=4,
        )
        return self.finish(interrupted=True)

    def _non_finite(self, error):
        where = f"epoch {self.p.epoch + 1}, optimizer step {self.p.step + 1}"
        kept = "the weights of the last good step"
        if not _all_finite(self.model):
            # An update overflowed: fall back to the newest checkpoint, else to
            # the starting weights.
            if self.checkpoint is not None:
                self.model.load_state_dict(load_checkpoint(self.checkpoint)["model"])
                kept = f"the weights of the checkpoint {self.checkpoint}"
            else:
                self.model, self.peft_model = build_trainable(
                    self.handle.model, self.config
                )
                kept = "the starting weights"
        message = (
            f"Training stopped at {where}: the {error}. The model keeps {kept}"
            + (f"; the last checkpoint is {self.checkpoint}" if self.checkpoint else "")
            + ". Lower learning_rate, set max_grad_norm, or check the inputs."
        )
        return NonFiniteLossError(message, self.finish(interrupted=False))

    def finish(self, interrupted):
        """The trained model, LoRA merged, frozen and in eval mode."""
        peft_model = self.peft_model
        tuned = peft_model.merge_and_unload() if peft_model is not None else self.model
        for parameter in tuned.parameters():
            parameter.requires_grad_(False)
        return TrainingResult(
            model=tuned.eval(),
            history=self.p.history,
            n_steps=self.p.step,
            interrupted=interrupted,
            checkpoint=self.checkpoint,
        )
