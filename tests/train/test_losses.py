import math

import pytest
import torch
import torch.nn.functional as F

from sklearn_clip._backends.torch.tensors import tokenize
from sklearn_clip._train.losses import contrastive_loss, same_caption, sigmoid_loss


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _unit(n, d=8):
    return F.normalize(torch.randn(n, d), dim=1)


def test_without_ids_it_is_clips_symmetric_cross_entropy():
    images, texts = _unit(6), _unit(6)
    logits = 20.0 * images @ texts.T
    labels = torch.arange(6)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(contrastive_loss(images, texts, 20.0), expected)


def test_matches_the_loss_transformers_trains_clip_with(tiny_clip):
    model, texts = tiny_clip.model, ["a red circle", "a blue square", "a cat"]
    input_ids, mask = tokenize(tiny_clip, texts)
    pixels = torch.randn(3, 3, 30, 30)
    with torch.no_grad():
        out = model(
            input_ids=input_ids,
            attention_mask=mask,
            pixel_values=pixels,
            return_loss=True,
        )
        ours = contrastive_loss(
            F.normalize(out.image_embeds, dim=1),
            F.normalize(out.text_embeds, dim=1),
            model.logit_scale.exp(),
        )
    torch.testing.assert_close(ours, out.loss)


def test_sigmoid_loss_matches_the_loss_transformers_trains_siglip_with(tiny_siglip):
    model, texts = tiny_siglip.model, ["a red circle", "a blue square", "a cat"]
    input_ids, mask = tokenize(tiny_siglip, texts)
    with torch.no_grad():
        out = model(
            input_ids=input_ids,
            attention_mask=mask,
            pixel_values=torch.randn(3, 3, 30, 30),
            return_loss=True,
        )
        ours = sigmoid_loss(
            F.normalize(out.image_embeds, dim=1),
            F.normalize(out.text_embeds, dim=1),
            model.logit_scale.exp(),
            model.logit_bias,
        )
    torch.testing.assert_close(ours, out.loss)


def test_equal_captions_are_not_negatives():
    # Rows 0 and 1 share a caption, so share one text embedding; images sit
    # exactly on their caption. With the ids, this is a perfect batch.
    texts = _unit(2)[[0, 0, 1]]
    images = texts.clone().requires_grad_(True)
    ids = torch.tensor([0, 0, 1])
    loss = contrastive_loss(images, texts, 50.0, ids)
    loss.backward()
    assert float(loss.detach()) < 1e-6
    assert float(images.grad.abs().max()) < 1e-6
    # Without them, the duplicate is a negative: the loss is log 2 for each of
    # the two rows, in both directions.
    plain = contrastive_loss(images.detach(), texts, 50.0)
    assert math.isclose(float(plain), 2 * math.log(2) / 3, rel_tol=1e-4)


def test_soft_targets_spread_evenly_over_equal_captions():
    # An image between two copies of its caption and far from the third:
    # moving it toward either copy must not lower the loss more than the other.
    texts = _unit(3)
    images = texts[[0, 0, 2]].clone().requires_grad_(True)
    ids = torch.tensor([0, 0, 1])
    contrastive_loss(images, texts[[0, 0, 2]], 10.0, ids).backward()
    torch.testing.assert_close(images.grad[0], images.grad[1])


def test_sigmoid_loss_counts_equal_captions_as_positives():
    texts = torch.eye(2, 4)[[0, 0, 1]]
    ids = torch.tensor([0, 0, 1])
    with_ids = sigmoid_loss(texts, texts, 30.0, -10.0, ids)
    without = sigmoid_loss(texts, texts, 30.0, -10.0)
    assert float(with_ids) < 0.05 < float(without)
    # The loss is the summed binary log-loss over all pairs, over n.
    logits = 30.0 * texts @ texts.T - 10.0
    signs = same_caption(ids, 3, "cpu").float() * 2 - 1
    expected = -F.logsigmoid(signs * logits).sum() / 3
    torch.testing.assert_close(with_ids, expected)


@pytest.mark.parametrize("loss", ["contrastive", "sigmoid"])
def test_losses_are_symmetric_and_permutation_invariant(loss):
    images, texts = _unit(5), _unit(5)
    ids = torch.tensor([0, 1, 0, 2, 1])

    def value(i, t, c):
        if loss == "contrastive":
            return contrastive_loss(i, t, 10.0, c)
        return sigmoid_loss(i, t, 10.0, -5.0, c)

    base = value(images, texts, ids)
    order = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(value(images[order], texts[order], ids[order]), base)
    torch.testing.assert_close(value(texts, images, ids), base)


def test_a_larger_scale_sharpens_a_correct_batch():
    embeds = _unit(4, d=16)
    assert contrastive_loss(embeds, embeds, 100.0) < contrastive_loss(
        embeds, embeds, 5.0
    )


def test_half_precision_inputs_give_a_float32_loss():
    images, texts = _unit(4).bfloat16(), _unit(4).bfloat16()
    assert contrastive_loss(images, texts, 10.0).dtype == torch.float32
    assert sigmoid_loss(images, texts, 10.0, -5.0).dtype == torch.float32


def test_gradients_reach_the_learned_scale_and_bias():
    scale = torch.tensor(2.0, requires_grad=True)
    bias = torch.tensor(-3.0, requires_grad=True)
    images, texts = _unit(4), _unit(4)
    (
        contrastive_loss(images, texts, scale.exp())
        + sigmoid_loss(images, texts, scale.exp(), bias)
    ).backward()
    assert scale.grad is not None and bias.grad is not None
