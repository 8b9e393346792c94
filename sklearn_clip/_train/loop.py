"""One contrastive training loop, in named steps, readable top to bottom.

:func:`train` copies the model, trains the copy on (image, caption) pairs and
returns it; the model it was given is never touched. The run is a
:class:`_Run`, whose methods are its steps in the order they happen (as in
skorch's ``fit_loop`` / ``run_single_epoch`` / ``train_step``):

- :meth:`_Run.set_up` builds the trainable copy, AdamW (weight decay on
  matrices only), the warmup-and-cosine schedule and the run signature, and
  resumes from a checkpoint when asked;
- :meth:`_Run.fit_loop` runs the epochs and turns interruptions into results;
- :meth:`_Run.run_single_epoch` walks one epoch's batches, a group of
  ``gradient_accumulation_steps`` micro-batches per step;
- :meth:`_Run.train_step` is one optimiser step: forward, backward, gradients
  reduced over processes, clipping, the update, the clamped temperature;
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
from dataclasses import asdict

import torch
from tqdm.auto import tqdm

from sklearn_clip._models.families import family_of
from sklearn_clip._models.forward import logit_scale
from sklearn_clip._train import distributed as dist
from sklearn_clip._train.checkpoints import (
    check_signature,
    latest_checkpoint,
    load_checkpoint,
    load_newest_intact,
    other_runs,
    rng_state,
    run_directory,
    run_signature,
    save_checkpoint,
    set_rng_state,
)
from sklearn_clip._train.contrastive import (
    batch_loss,
    embed_batch,
    evaluate,
    recall_at_1,
    temperature_parameters,
)
from sklearn_clip._train.pairs import PairedData, prepare_pairs, split_validation
from sklearn_clip._train.schedule import (
    TrainingConfig,
    TrainingResult,
    _Progress,
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
    "save_checkpoint",
    "split_validation",
    "train",
]

# open_clip's ceiling on the temperature: logits at most 100 x cosine.
MAX_LOGIT_SCALE = math.log(100)


def _autocast(device, name):
    # The fine-tuner chose the precision (sklearn_clip._models.precision); None
    # trains in float32.
    amp = None if name is None else getattr(torch, name)
    return torch.autocast(
        device.type, dtype=amp or torch.bfloat16, enabled=amp is not None
    )


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


class _Run:
    """The state of one training run and its steps."""

    def __init__(self, handle, train_data, val_data, config, checkpoint_dir):
        self.handle, self.device = handle, handle.device
        self.train_data, self.val_data, self.config = train_data, val_data, config
        self.checkpoint_dir = checkpoint_dir
        self.main = dist.is_main_process()
        self.p = _Progress()
        self.best_model = None
        self.checkpoint = None

    # -- set-up and resume -------------------------------------------------------
    def set_up(self, resume):
        config = self.config
        # Training starts from the checkpoint's own precision, never from a
        # bfloat16 copy loaded for inference.
        start = self.handle.full_precision_model()
        self.model, self.peft_model = build_trainable(start, config)
        self.model.to(self.device).train()
        dist.broadcast_state(self.model)  # every rank starts from rank 0's weights
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.temperature = temperature_parameters(self.model)
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.model, config.weight_decay),
            lr=config.learning_rate,
            betas=(0.9, 0.98),  # CLIP's betas and epsilon
            eps=1e-6,
        )
        self.autocast = _autocast(self.device, config.autocast)
        n_batches = len(epoch_batches(len(self.train_data), config.batch_size, 0, 0))
        self.total_steps = math.ceil(n_batches / config.gradient_accumulation_steps)
        self.total_steps *= config.max_epochs
        self.warmup_steps = round(config.warmup_fraction * self.total_steps)
        self.signature = run_signature(
            config, self.train_data, self.val_data, self.model, start
        )
        self.run_dir = None
        if self.checkpoint_dir is not None:
            self.run_dir = run_directory(self.checkpoint_dir, self.signature)
            if self.main:
                for stale in self.run_dir.glob("*.pt.tmp"):
                    stale.unlink(missing_ok=True)
        if resume:
            self._resume(resume)

    def _resume(self, resume):
        path, state = self._find_checkpoint(resume)
        if state is None:
            return  # resume="auto" and this run has no checkpoint yet
        check_signature(state["signature"], self.signature, path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.p = _Progress(**state["progress"])
        self.p.best = None if self.p.best is None else tuple(self.p.best)
        self.best_model = state["best_model"]
        set_rng_state(state["rng"], self.device)
        self.checkpoint = path

    def _find_checkpoint(self, resume):
        """``(path, state)`` to resume from; rank 0 chooses, every rank loads it."""
        if resume is not True and resume != "auto":
            return str(resume), load_checkpoint(resume)
        path = None
        if self.main:
            path, _ = load_newest_intact(self.run_dir)
            if path is None:
                path = next(iter(other_runs(self.checkpoint_dir, self.run_dir)), None)
        path = dist.broadcast_object(path)
        if path is None and resume == "auto":
            return None, None
        if path is None:
            raise FileNotFoundError(
                f"resume=True but there is no checkpoint in {self.checkpoint_dir!r}; "
                "fit with resume=False to start a new run."
            )
        # A checkpoint of another run is loaded only to say what differs.
        return path, load_checkpoint(path)

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
        model, config = self.model, self.config
        group_loss = 0.0
        for rows in group:
            sizes = dist.share_sizes(len(rows))
            with self.autocast:
                image_embeds, text_embeds, ids = embed_batch(
                    model,
                    self.handle,
                    self.train_data,
                    dist.local_share(rows),
                    self.device,
                )
                loss = batch_loss(model, image_embeds, text_embeds, ids, sizes)
            # CPU-GPU sync point, once per micro-batch: a non-finite loss must
            # be caught before it is backpropagated.
            value = float(loss.detach())
            if not math.isfinite(value):
                raise _NonFinite(f"loss is {value}")
            # Gradients average over the group's micro-batches.
            (loss / len(group)).backward()
            group_loss += value
        dist.all_reduce_gradients(self.trainable, averaged=self.temperature)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.trainable, config.max_grad_norm or math.inf
        )
        if not torch.isfinite(grad_norm):
            raise _NonFinite(f"gradient norm is {float(grad_norm)}")
        self.lr = self._learning_rate()
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = self.lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        family = family_of(model)
        if family.log_temperature:  # ALIGN stores the temperature itself
            with torch.no_grad():
                getattr(model, family.temperature).clamp_(0, MAX_LOGIT_SCALE)
        return group_loss, float(grad_norm)

    def _learning_rate(self):
        multiplier = lr_multiplier(self.p.step, self.warmup_steps, self.total_steps)
        return self.config.learning_rate * multiplier

    # -- validation, early stopping, checkpoints -----------------------------------
    def end_epoch(self, verbose):
        p, config = self.p, self.config
        record = {
            "epoch": p.epoch + 1,
            "train_loss": p.loss_sum / max(1, p.batch),
            "val_loss": math.nan,
            "val_recall_at_1": math.nan,
            "learning_rate": getattr(self, "lr", self._learning_rate()),
            "logit_scale": float(logit_scale(self.model).detach().float().mean()),
            "grad_norm": p.grad_norm_sum / max(1, p.epoch_steps),
            "seconds": 0.0,
        }
        if self.val_data is not None:
            self.validate(record)
        record["seconds"] = time.perf_counter() - self.started
        p.history.append(record)
        if verbose > 0 and self.main:
            print(_describe(record, config.max_epochs), flush=True)
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

    def write_checkpoint(self):
        if self.run_dir is None or not self.main:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": {
                "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps,
            },
            "progress": asdict(self.p),
            "best_model": self.best_model,
            "rng": rng_state(self.device),
            "signature": self.signature,
            "versions": {"torch": str(torch.__version__)},
        }
        self.checkpoint = save_checkpoint(self.run_dir, state)

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
