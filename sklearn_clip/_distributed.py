"""Rank, world size and feature gathering; a no-op in a single process.

A contrastive loss compares every image with every text of the batch, so with
several processes (``torchrun``) each one gathers the embeddings of all the
others before computing it. The gathered copies carry no gradient; each process
puts its own slice back in place, with its gradient, so that backpropagation
reaches its own encoders and the sum over processes of their gradients equals
the gradient of the single-process loss over the whole batch (open_clip's
``gather_features`` does the same).

Without an initialised process group (the usual case) the world is one process
of rank 0 and every function returns its input unchanged, so the training loop
runs the same code either way.
"""

import torch
import torch.distributed as dist


def is_distributed():
    """True inside an initialised ``torch.distributed`` process group."""
    return dist.is_available() and dist.is_initialized()


def get_rank():
    """This process's rank: 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size():
    """The number of processes: 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process():
    """Whether this process writes checkpoints, logs and progress bars."""
    return get_rank() == 0


def gather_with_grad(tensor):
    """Concatenate ``tensor`` from every rank, keeping this rank's gradient.

    Every rank must pass a tensor of the same shape.

    Parameters
    ----------
    tensor : tensor of shape (n, ...)

    Returns
    -------
    tensor of shape (world_size * n, ...)
        Rank ``r``'s rows at ``r * n : (r + 1) * n``; only this rank's rows
        are connected to the autograd graph.

    Examples
    --------
    >>> import torch
    >>> from sklearn_clip._distributed import gather_with_grad
    >>> x = torch.ones(2, 3, requires_grad=True)
    >>> gather_with_grad(x) is x  # one process: nothing to gather
    True
    """
    world_size = get_world_size()
    if world_size == 1:
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(world_size)]
    # all_gather fills plain buffers (no autograd): put the local slice back.
    dist.all_gather(gathered, tensor.detach().contiguous())
    gathered[get_rank()] = tensor
    return torch.cat(gathered)


def gather_features(image_embeds, text_embeds, caption_ids=None):
    """The whole batch's embeddings (and caption ids) from every rank.

    Parameters
    ----------
    image_embeds, text_embeds : tensor of shape (n, d)
        This rank's share of the batch.
    caption_ids : tensor of shape (n,), default=None
        Ids of this rank's captions, gathered without gradient.

    Returns
    -------
    image_embeds, text_embeds, caption_ids
        Over the whole batch; the inputs themselves in a single process.
    """
    image_embeds = gather_with_grad(image_embeds)
    text_embeds = gather_with_grad(text_embeds)
    if caption_ids is not None and get_world_size() > 1:
        caption_ids = gather_with_grad(caption_ids)
    return image_embeds, text_embeds, caption_ids


def mean_over_ranks(value):
    """Average a Python float over all ranks (losses and metrics for logging)."""
    if get_world_size() == 1:
        return float(value)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    total = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item()) / get_world_size()
