"""One batch through the model: embeddings, the contrastive loss, recall@1.

With several processes each works on its share of the batch
(:func:`~sklearn_clip._train.distributed.local_share`) and the loss and the
validation metrics are computed over the whole, gathered batch, so they have
the same value on every rank and equal the single-process ones.
"""

import numpy as np
import torch
import torch.nn.functional as F

from sklearn_clip._backends.torch.forward import (
    image_features,
    logit_scale,
    text_features,
)
from sklearn_clip._backends.torch.tensors import normalize_batch, tokenize
from sklearn_clip._encoding.tokens import token_ids
from sklearn_clip._models.families import family_of
from sklearn_clip._train import distributed as dist
from sklearn_clip._train.losses import contrastive_loss, sigmoid_loss
from sklearn_clip.metrics import recall_at_k


def embed_batch(model, handle, data, rows, device):
    """L2-normalised image and text embeddings of ``rows``, and caption ids."""
    ids = data.caption_ids[rows]
    if len(rows) == 0:  # a rank whose share of a small batch is empty
        empty = torch.zeros((0, handle.embedding_dim), device=device)
        return empty, empty.clone(), torch.as_tensor(ids, device=device)
    pixels = normalize_batch(data.pixels(rows), handle.image_config, device)
    # Each distinct caption of the batch goes through the text tower once.
    distinct, inverse = np.unique(ids, return_inverse=True)
    input_ids, mask = caption_tokens(handle, data, distinct, device)
    images = image_features(model, pixels)
    texts = text_features(model, input_ids, mask)
    texts = texts[torch.as_tensor(inverse.reshape(-1), device=device)]
    return (
        F.normalize(images.float(), dim=-1),
        F.normalize(texts.float(), dim=-1),
        torch.as_tensor(ids, device=device),
    )


def caption_tokens(handle, data, distinct, device):
    """Token ids and mask (or None) of the captions ``distinct`` of ``data``.

    Every caption is tokenised once, at the first call, not at every step:
    with a fast model, tokenising a batch's captions again each step cost
    about a tenth of the step. The rows are padded to their own longest, as
    the tokenizer pads a batch.
    """
    if data.tokens is None:
        data.tokens = token_ids(handle, data.captions)
    input_ids, mask = (None if a is None else a[distinct] for a in data.tokens)
    if mask is not None:  # drop the columns that only padding fills
        keep = mask.any(axis=0)
        input_ids, mask = (
            input_ids[:, keep],
            torch.as_tensor(mask[:, keep], device=device),
        )
    return torch.as_tensor(input_ids, device=device), mask


def batch_loss(model, image_embeds, text_embeds, caption_ids, sizes=None):
    """The loss over the whole batch, gathered from every process."""
    image_embeds, text_embeds, caption_ids = dist.gather_features(
        image_embeds, text_embeds, caption_ids, sizes
    )
    family = family_of(model)
    scale = logit_scale(model)
    if family.sigmoid:
        bias = getattr(model, family.bias)
        return sigmoid_loss(image_embeds, text_embeds, scale, bias, caption_ids)
    return contrastive_loss(image_embeds, text_embeds, scale, caption_ids)


def temperature_parameters(model):
    """The parameters used after the gather: every rank has their full gradient."""
    return [getattr(model, name) for name in family_of(model).temperature_names]


def recall_at_1(image_embeds, text_embeds, caption_ids):
    """Image-to-text recall@1 of validation: :func:`sklearn_clip.metrics.recall_at_k`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip._train.contrastive import recall_at_1
    >>> recall_at_1(np.eye(3), np.eye(3), np.array([0, 1, 1]))
    0.6666666666666666
    """
    return recall_at_k(image_embeds, text_embeds, caption_ids, k=1)


def sequential_batches(n, batch_size):
    """Consecutive row ranges of ``batch_size`` (validation's fixed order)."""
    return [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


@torch.inference_mode()
def evaluate(model, handle, data, batch_size, device, autocast):
    """Validation loss (mean over pairs) and image-to-text recall@1.

    Every rank embeds its share of each batch and of the captions, and gets
    the same gathered values back: the metrics are computed once and agree
    on every rank.
    """
    model.eval()
    total, images = 0.0, []
    for rows in sequential_batches(len(data), batch_size):
        sizes = dist.share_sizes(len(rows))
        with autocast:
            image_embeds, text_embeds, ids = embed_batch(
                model, handle, data, dist.local_share(rows), device
            )
            loss = batch_loss(model, image_embeds, text_embeds, ids, sizes)
        total += float(loss) * len(rows)
        images.append(dist.gather_with_grad(image_embeds, sizes).float().cpu())
    texts = []
    for rows in sequential_batches(len(data.captions), batch_size):
        share = dist.local_share(rows)
        features = torch.zeros((0, handle.embedding_dim), device=device)
        if len(share):
            captions = [data.captions[i] for i in share]
            input_ids, mask = tokenize(handle, captions, device)
            with autocast:
                features = text_features(model, input_ids, mask)
        features = F.normalize(features.float(), dim=-1)
        texts.append(dist.gather_with_grad(features, dist.share_sizes(len(rows))).cpu())
    model.train()
    recall = recall_at_1(
        torch.cat(images).numpy(), torch.cat(texts).numpy(), data.caption_ids
    )
    return total / len(data), recall
