"""Contrastive losses over a batch of paired image and text embeddings.

Both losses take L2-normalised embeddings of the whole (gathered) batch and the
scale the model learned, and treat pairs whose captions are equal as matches:
with class labels turned into captions (FLYP), or a caption dataset that
repeats itself, two images of the same class are not negatives of each other.

- :func:`contrastive_loss`: the symmetric InfoNCE loss of CLIP. Each image's
  target is a distribution spread evenly over the texts with its caption, and
  each text's over the images with its caption. It is measured as the KL
  divergence from those targets (cross-entropy minus the targets' entropy), so
  a perfect batch scores 0 however many captions repeat.
- :func:`sigmoid_loss`: the pairwise sigmoid loss of SigLIP; every (image,
  text) pair is a binary problem, positive where the captions are equal.

Without ``caption_ids`` every row is its own caption: the targets reduce to the
identity, and the losses to open_clip's ``ClipLoss`` and ``SigLipLoss``.
"""

import torch
import torch.nn.functional as F


def same_caption(caption_ids, n, device):
    """Boolean ``(n, n)`` matrix, True where rows ``i`` and ``j`` share a caption.

    Parameters
    ----------
    caption_ids : tensor of shape (n,) or None
        Integer id of each row's caption; equal ids mean equal captions. None
        means every row has a caption of its own.
    n : int
        Number of rows.
    device : torch.device
        Where the matrix lives.

    Returns
    -------
    tensor of shape (n, n), bool

    Examples
    --------
    >>> import torch
    >>> from sklearn_clip._train.losses import same_caption
    >>> same_caption(torch.tensor([0, 1, 0]), 3, "cpu").int()
    tensor([[1, 0, 1],
            [0, 1, 0],
            [1, 0, 1]], dtype=torch.int32)
    """
    if caption_ids is None:
        return torch.eye(n, dtype=torch.bool, device=device)
    caption_ids = caption_ids.to(device)
    return caption_ids[:, None] == caption_ids[None, :]


def contrastive_loss(image_embeds, text_embeds, logit_scale, caption_ids=None):
    """Symmetric InfoNCE loss with soft targets over equal captions.

    Parameters
    ----------
    image_embeds, text_embeds : tensor of shape (n, d)
        L2-normalised embeddings; row ``i`` of each is the pair ``i``.
    logit_scale : tensor or float
        The multiplier of the cosine similarities, ``exp`` of the model's
        ``logit_scale`` parameter.
    caption_ids : tensor of shape (n,), default=None
        Integer id of each pair's caption. Pairs with equal ids count as
        matches in both directions, each receiving an equal share of the
        target probability.

    Returns
    -------
    tensor
        The scalar loss, in float32: the mean of the image-to-text and
        text-to-image KL divergences from the targets, per row.

    Examples
    --------
    >>> import torch
    >>> from sklearn_clip._train.losses import contrastive_loss
    >>> embeds = torch.nn.functional.normalize(torch.eye(3, 4), dim=1)
    >>> float(contrastive_loss(embeds, embeds, 100.0)) < 1e-6
    True
    >>> # Rows 0 and 1 share a caption, so neither is a negative of the other.
    >>> same = embeds[[0, 0, 1]]
    >>> float(contrastive_loss(same, same, 100.0, torch.tensor([0, 0, 1]))) < 1e-6
    True
    >>> # Without the ids they are: rows 0 and 1 are each half wrong.
    >>> round(float(contrastive_loss(same, same, 100.0)), 2)
    0.46
    """
    # Softmax over large logits is where half precision loses the most.
    logits = logit_scale * image_embeds.float() @ text_embeds.float().T
    same = same_caption(caption_ids, logits.shape[0], logits.device).float()
    # `same` is symmetric, so one row-normalised matrix serves both directions.
    targets = same / same.sum(dim=1, keepdim=True)
    image_to_text = F.kl_div(logits.log_softmax(dim=1), targets, reduction="batchmean")
    text_to_image = F.kl_div(
        logits.T.log_softmax(dim=1), targets, reduction="batchmean"
    )
    return (image_to_text + text_to_image) / 2


def sigmoid_loss(image_embeds, text_embeds, logit_scale, logit_bias, caption_ids=None):
    """SigLIP's pairwise sigmoid loss, positive where captions are equal.

    Parameters
    ----------
    image_embeds, text_embeds : tensor of shape (n, d)
        L2-normalised embeddings; row ``i`` of each is the pair ``i``.
    logit_scale : tensor or float
        The multiplier of the cosine similarities, ``exp`` of the model's
        ``logit_scale`` parameter.
    logit_bias : tensor or float
        The model's learned bias, added to every logit.
    caption_ids : tensor of shape (n,), default=None
        Integer id of each pair's caption; pairs with equal ids are positives.

    Returns
    -------
    tensor
        The scalar loss in float32: the summed binary log-loss over all
        ``n * n`` pairs, divided by ``n`` as in the SigLIP paper.

    Examples
    --------
    >>> import torch
    >>> from sklearn_clip._train.losses import sigmoid_loss
    >>> embeds = torch.nn.functional.normalize(torch.eye(3, 4), dim=1)
    >>> float(sigmoid_loss(embeds, embeds, 100.0, -10.0)) < 1e-3
    True
    """
    logits = logit_scale * image_embeds.float() @ text_embeds.float().T + logit_bias
    same = same_caption(caption_ids, logits.shape[0], logits.device)
    signs = same.float() * 2 - 1
    return -F.logsigmoid(signs * logits).sum() / logits.shape[0]
