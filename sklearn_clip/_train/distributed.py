"""Several processes training as one: rank, world size, sharing and gathering.

Under ``torchrun`` every process (rank) walks the same batches in the same
order (they derive from ``random_state``) and takes an even, contiguous share
of each: :func:`local_share`. A contrastive loss compares every image with
every text of the batch, so each rank gathers the embeddings of the others
(:func:`gather_features`); the gathered copies carry no gradient and each rank
puts its own share back in place, with its gradient. Every rank then computes
the same loss over the whole batch, and its gradient reaches only its own
share, so the **sum** over ranks of the tower gradients is the single-process
gradient; the temperature, used after the gather, gets the whole gradient on
every rank and is **averaged** instead (:func:`all_reduce_gradients`). This
is why the loop reduces gradients itself rather than through
``DistributedDataParallel``, which averages everything.

Without an initialised process group (the usual case) the world is one process
of rank 0 and every function returns its input unchanged, so the training loop
runs the same code either way.
"""

import os
from contextlib import contextmanager

import numpy as np
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


def init_from_environment(device):
    """Join the process group ``torchrun`` describes, if any; return whether joined.

    gloo on CPU, NCCL on CUDA (where each rank uses the GPU of its
    ``LOCAL_RANK``). Does nothing in a single process or when the user has
    initialised ``torch.distributed`` already.
    """
    if is_distributed():
        return False
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


@contextmanager
def process_group(device):
    """Be in the process group ``torchrun`` describes for the length of a block.

    Whoever initialises the group destroys it. The block joins the group when
    ``torchrun`` describes one and nobody has joined it yet, and then leaves
    it on the way out, after every rank has got there. A group joined before
    (by the user, or by a caller that needs it after the block, as the
    ``finetune`` command does) is left as it is: its owner destroys it.

    Parameters
    ----------
    device : torch.device
        Decides the backend: NCCL for CUDA, gloo otherwise.

    Yields
    ------
    bool
        Whether this block joined the group (and so will leave it).

    Examples
    --------
    >>> import torch
    >>> from sklearn_clip._train.distributed import process_group
    >>> with process_group(torch.device("cpu")) as joined:  # one process
    ...     joined
    False
    """
    joined = init_from_environment(device)
    if not joined:
        yield False
        return
    try:
        yield True
        barrier()  # no rank leaves while another still uses the group
    finally:
        dist.destroy_process_group()


def local_share(rows):
    """This rank's contiguous share of a batch; shares differ by at most one row.

    Concatenating the shares in rank order gives the batch back, so a gathered
    batch is in the single-process order.
    """
    return np.array_split(np.asarray(rows), get_world_size())[get_rank()]


def share_sizes(n_rows):
    """The size of every rank's share of an ``n_rows`` batch, in rank order."""
    return [len(part) for part in np.array_split(np.arange(n_rows), get_world_size())]


def gather_with_grad(tensor, sizes=None):
    """Concatenate ``tensor`` from every rank, keeping this rank's gradient.

    Parameters
    ----------
    tensor : tensor of shape (n, ...)
    sizes : list of int, default=None
        Every rank's ``n``, in rank order; None means all are equal.

    Returns
    -------
    tensor of shape (sum(sizes), ...)
        The ranks' rows in rank order; only this rank's rows are connected to
        the autograd graph.

    Examples
    --------
    >>> import torch
    >>> from sklearn_clip._train.distributed import gather_with_grad
    >>> x = torch.ones(2, 3, requires_grad=True)
    >>> gather_with_grad(x) is x  # one process: nothing to gather
    True
    """
    world_size = get_world_size()
    if world_size == 1:
        return tensor
    sizes = sizes or [len(tensor)] * world_size
    # all_gather needs equal shapes: pad every share to the largest.
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: len(tensor)] = tensor.detach()
    gathered = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(gathered, padded)
    # all_gather fills plain buffers (no autograd): put the local share back.
    parts = [part[:size] for part, size in zip(gathered, sizes)]
    parts[get_rank()] = tensor
    return torch.cat(parts)


def gather_features(image_embeds, text_embeds, caption_ids=None, sizes=None):
    """The whole batch's embeddings (and caption ids) from every rank.

    Parameters
    ----------
    image_embeds, text_embeds : tensor of shape (n, d)
        This rank's share of the batch.
    caption_ids : tensor of shape (n,), default=None
        Ids of this rank's captions, gathered without gradient.
    sizes : list of int, default=None
        Every rank's share size (see :func:`share_sizes`); None: all equal.

    Returns
    -------
    image_embeds, text_embeds, caption_ids
        Over the whole batch; the inputs themselves in a single process.
    """
    image_embeds = gather_with_grad(image_embeds, sizes)
    text_embeds = gather_with_grad(text_embeds, sizes)
    if caption_ids is not None and get_world_size() > 1:
        caption_ids = gather_with_grad(caption_ids, sizes)
    return image_embeds, text_embeds, caption_ids


def mean_over_ranks(value):
    """Average a Python float over all ranks (losses and metrics for logging)."""
    if get_world_size() == 1:
        return float(value)
    total = torch.tensor([float(value)], dtype=torch.float64, device=_device())
    dist.all_reduce(total)
    return float(total.item()) / get_world_size()


def _device():
    return torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_gradients(parameters, averaged=()):
    """Sum every parameter's gradient over ranks; average those in ``averaged``.

    A rank whose share was empty has no gradient: it contributes zeros. One
    flat buffer makes it one collective call, not one per parameter.
    """
    if get_world_size() == 1:
        return
    parameters = list(parameters)
    averaged = {id(p) for p in averaged}
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in parameters]
    flat = torch.cat([g.reshape(-1).float() for g in grads]).to(_device())
    dist.all_reduce(flat)
    offset = 0
    for parameter, grad in zip(parameters, grads):
        part = flat[offset : offset + grad.numel()].view_as(grad)
        if id(parameter) in averaged:
            part = part / get_world_size()
        parameter.grad = part.to(grad.device, grad.dtype).clone()
        offset += grad.numel()


def broadcast_state(module):
    """Give every rank rank 0's parameters and buffers (DDP does the same)."""
    if get_world_size() == 1:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            moved = tensor.data.to(_device())
            dist.broadcast(moved, src=0)
            tensor.data.copy_(moved)


def broadcast_object(value):
    """Rank 0's ``value`` on every rank (a checkpoint's path, say)."""
    if get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier():
    """Wait for every rank (e.g. until rank 0 has written a file)."""
    if get_world_size() > 1:
        dist.barrier()
