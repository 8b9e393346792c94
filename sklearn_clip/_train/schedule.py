"""What a training run is set to do and where it stands.

:class:`TrainingConfig` holds everything that decides the trained weights (a
checkpoint's signature records it), :class:`_Progress` the position a
checkpoint saves, :func:`lr_multiplier` the schedule and
:func:`epoch_batches` the order of the pairs, which depends on the seed and
the epoch alone.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides the trained weights (a checkpoint records it)."""

    learning_rate: float = 1e-5
    weight_decay: float = 0.1
    max_epochs: int = 10
    batch_size: int = 32  # the global batch, over every process
    warmup_fraction: float = 0.1
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0
    train_parts: str = "all"
    lora: int | dict | None = None
    n_iter_no_change: int | None = None
    seed: int = 0
    # The autocast dtype's name ("bfloat16"), or None to train in float32.
    autocast: str | None = None


@dataclass
class TrainingResult:
    """What :func:`train` hands back."""

    model: torch.nn.Module
    history: list
    n_steps: int
    interrupted: bool = False
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
    bad_epochs: int = 0
    finished: bool = False


def lr_multiplier(step, warmup_steps, total_steps):
    """Linear warmup to 1, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def epoch_batches(n, batch_size, seed, epoch, shuffle=True):
    """Row indices of each (global) micro-batch of an epoch.

    The order depends only on ``(seed, epoch)``: every process of a
    distributed run walks the same batches, and a resumed run replays them
    without saving any random state for them.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else None
    order = np.arange(n) if order is None else order
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    # A single pair has nothing to be contrasted with (its loss is exactly 0),
    # so a last batch of one joins the batch before it.
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches
