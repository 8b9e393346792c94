"""The training history: one record per epoch, its printed line and its plot."""

import math

import numpy as np


def describe_epoch(record, max_epochs):
    """The line ``verbose`` prints for one epoch's record."""
    text = (
        f"epoch {record['epoch']}/{max_epochs}: train loss {record['train_loss']:.4f}"
    )
    if not math.isnan(record["val_loss"]):
        text += (
            f", val loss {record['val_loss']:.4f}, "
            f"val recall@1 {record['val_recall_at_1']:.3f}"
        )
    return text + f", lr {record['learning_rate']:.2e}, {record['seconds']:.1f} s"


def plot_history(history, ax=None):
    """Plot the training and validation loss, and validation recall@1.

    Parameters
    ----------
    history : list of dict
        The fine-tuner's ``history_``.
    ax : matplotlib Axes, default=None
        Where to draw; None makes a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        The axes of the losses; recall@1 is on a twin axis on the right.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in history]
    lines = ax.plot(
        epochs, [h["train_loss"] for h in history], "o-", label="train loss"
    )
    val_loss = [h["val_loss"] for h in history]
    if not np.all(np.isnan(val_loss)):
        lines += ax.plot(epochs, val_loss, "s-", label="validation loss")
        lines += _plot_recall(ax, epochs, [h["val_recall_at_1"] for h in history])
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    # Below the axes: the loss and recall curves can fill any corner.
    ax.legend(
        lines,
        [line.get_label() for line in lines],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        ncol=len(lines),
        frameon=False,
    )
    return ax


def _plot_recall(ax, epochs, recall):
    # Recall lives in [0, 1], losses do not: a twin axis keeps both readable.
    twin = ax.twinx()
    lines = twin.plot(
        epochs, recall, "^--", color="tab:green", label="validation recall@1"
    )
    twin.set_ylabel("recall@1")
    twin.set_ylim(0, 1.02)
    return lines
