"""What a training run holds, and what a checkpoint saves and restores of it.

:class:`RunState` is everything the loop in :mod:`sklearn_clip._train.loop`
works on: the trainable copy of the model, AdamW, the warmup-and-cosine
schedule, the progress, the best weights so far and the run's signature. It
is built fresh by :meth:`RunState.set_up`, written by
:meth:`RunState.write_checkpoint` and restored from a checkpoint of the same
run when asked to resume; the files themselves are
:mod:`sklearn_clip._train.checkpoints`' business.
"""

import math
from dataclasses import asdict

import torch

from sklearn_clip._train import distributed as dist
from sklearn_clip._train.checkpoints import (
    check_signature,
    find_resume_checkpoint,
    remove_temporary_files,
    rng_state,
    run_directory,
    run_signature,
    save_checkpoint,
    set_rng_state,
)
from sklearn_clip._train.contrastive import temperature_parameters
from sklearn_clip._train.schedule import _Progress, epoch_batches, lr_multiplier
from sklearn_clip._train.trainable import build_trainable, parameter_groups


class RunState:
    """The state of one training run: set up, checkpointed, resumed."""

    def __init__(self, handle, train_data, val_data, config, checkpoint_dir):
        self.handle, self.device = handle, handle.device
        self.train_data, self.val_data, self.config = train_data, val_data, config
        self.checkpoint_dir = checkpoint_dir
        self.main = dist.is_main_process()
        self.p = _Progress()
        self.best_model = None
        self.checkpoint = None
        self.run_dir = None

    def set_up(self, resume):
        """Build the model, optimiser and schedule; resume when asked."""
        # Training starts from the checkpoint's own precision, never from a
        # bfloat16 copy loaded for inference.
        start = self.handle.full_precision_model()
        self._set_up_model(start)
        self._set_up_schedule()
        self.signature = run_signature(
            self.config, self.train_data, self.val_data, self.model, start
        )
        if self.checkpoint_dir is not None:
            self.run_dir = run_directory(self.checkpoint_dir, self.signature)
            if self.main:  # what a killed writer left behind
                remove_temporary_files(self.run_dir)
        if resume:
            self._resume(resume)

    def _set_up_model(self, start):
        config = self.config
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

    def _set_up_schedule(self):
        config = self.config
        n_batches = len(epoch_batches(len(self.train_data), config.batch_size, 0, 0))
        self.total_steps = math.ceil(n_batches / config.gradient_accumulation_steps)
        self.total_steps *= config.max_epochs
        self.warmup_steps = round(config.warmup_fraction * self.total_steps)

    def learning_rate(self):
        """The learning rate of the next optimiser step."""
        multiplier = lr_multiplier(self.p.step, self.warmup_steps, self.total_steps)
        return self.config.learning_rate * multiplier

    def _resume(self, resume):
        path, state = find_resume_checkpoint(resume, self.checkpoint_dir, self.run_dir)
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

    def write_checkpoint(self):
        """Save the run (rank 0 only, and only with a ``checkpoint_dir``)."""
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


def _autocast(device, name):
    # The fine-tuner chose the precision (sklearn_clip._backends.torch.precision); None
    # trains in float32.
    amp = None if name is None else getattr(torch, name)
    return torch.autocast(
        device.type, dtype=amp or torch.bfloat16, enabled=amp is not None
    )
