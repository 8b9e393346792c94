"""The short forward passes compute what transformers computes, with less work."""

import pytest
import torch
from transformers import AutoModel
from transformers.activations import QuickGELUActivation

from sklearn_clip._forward import (
    QuickGELU,
    image_features,
    text_features,
    use_fast_activations,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _stock(path):
    """The model as transformers loads it, untouched by sklearn-clip."""
    return AutoModel.from_pretrained(str(path)).eval()


def _ours(path):
    return use_fast_activations(_stock(path))


def test_quick_gelu_matches_transformers_values_and_gradients():
    x = torch.linspace(-12, 12, 2001, dtype=torch.float64, requires_grad=True)
    theirs = QuickGELUActivation()(x)
    (theirs_grad,) = torch.autograd.grad(theirs.sum(), x)
    ours = QuickGELU()(x)
    (ours_grad,) = torch.autograd.grad(ours.sum(), x)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-12, atol=1e-12)


def test_fast_activations_replace_every_quick_gelu_and_keep_the_weights(
    tiny_clip_path,
):
    stock = _stock(tiny_clip_path)
    assert any(isinstance(m, QuickGELUActivation) for m in stock.modules())
    keys = list(stock.state_dict())
    use_fast_activations(stock)
    assert not any(isinstance(m, QuickGELUActivation) for m in stock.modules())
    assert sum(isinstance(m, QuickGELU) for m in stock.modules()) == 2 * 2  # layers
    assert list(stock.state_dict()) == keys


def test_loaded_handles_use_the_fast_activations(tiny_clip):
    assert not any(
        isinstance(m, QuickGELUActivation) for m in tiny_clip.model.modules()
    )


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_image_features_match_get_image_features(tiny_clip_path, batch):
    stock, ours = _stock(tiny_clip_path), _ours(tiny_clip_path)
    pixels = torch.randn(batch, 3, 30, 30, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = stock.get_image_features(pixel_values=pixels).pooler_output
        got = image_features(ours, pixels)
    assert got.shape == expected.shape == (batch, stock.config.projection_dim)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_text_features_match_get_text_features(tiny_clip_path, tiny_clip):
    stock, ours = _stock(tiny_clip_path), _ours(tiny_clip_path)
    batch = tiny_clip.tokenizer(
        ["a red circle", "a small blue square on the left"],
        padding=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        expected = stock.get_text_features(**batch).pooler_output
        got = text_features(ours, batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_the_last_layer_runs_for_the_class_token_only(tiny_clip_path):
    ours = _ours(tiny_clip_path)
    seen = {}
    layers = ours.vision_model.encoder.layers
    for name, layer in [("first", layers[0]), ("last", layers[-1])]:
        layer.mlp.register_forward_hook(
            lambda module, args, out, name=name: seen.__setitem__(name, args[0].shape)
        )
    with torch.inference_mode():
        image_features(ours, torch.randn(4, 3, 30, 30))
    tokens = ours.vision_model.embeddings.num_positions
    assert seen == {"first": (4, tokens, 32), "last": (4, 1, 32)}


def test_gradients_match_the_stock_forward(tiny_clip_path):
    """Fine-tuning goes through the short path: same loss, same gradients."""
    stock, ours = _stock(tiny_clip_path).train(), _ours(tiny_clip_path).train()
    pixels = torch.randn(5, 3, 30, 30, generator=torch.Generator().manual_seed(1))
    target = torch.randn(5, stock.config.projection_dim)

    def gradients(model, features):
        loss = ((features - target) ** 2).sum()
        loss.backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    theirs = gradients(
        stock, stock.get_image_features(pixel_values=pixels).pooler_output
    )
    mine = gradients(ours, image_features(ours, pixels))
    assert mine.keys() == theirs.keys() and len(mine) > 20
    for name in theirs:
        torch.testing.assert_close(mine[name], theirs[name], rtol=1e-4, atol=1e-5)


def test_attention_dropout_in_training_takes_the_stock_path(tiny_clip_path):
    ours = _ours(tiny_clip_path).train()
    ours.vision_model.config.attention_dropout = 0.5
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 30, 30)
    seen = []
    ours.vision_model.encoder.layers[-1].mlp.register_forward_hook(
        lambda module, args, out: seen.append(args[0].shape[1])
    )
    image_features(ours, pixels)
    assert seen == [ours.vision_model.embeddings.num_positions]


def test_siglip_takes_the_stock_path(tiny_siglip_path):
    stock = _stock(tiny_siglip_path)
    pixels = torch.randn(2, 3, 30, 30)
    with torch.inference_mode():
        expected = stock.get_image_features(pixel_values=pixels).pooler_output
        torch.testing.assert_close(
            image_features(stock, pixels), expected, rtol=0, atol=0
        )
