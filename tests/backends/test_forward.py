"""The short forward passes compute what transformers computes, with less work."""

import numpy as np
import pytest
import torch
from transformers import AutoModel
from transformers.activations import QuickGELUActivation

from sklearn_clip._backends.torch.forward import (
    FAST_PATHS,
    QuickGELU,
    fast_paths,
    image_features,
    text_features,
    use_fast_activations,
)
from sklearn_clip.toy import FAMILIES, make_tiny_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The family of each class that takes a shortcut: each shortcut is proven
# below for every class it is used for.
FAMILY_OF = {
    "CLIPModel": "clip",
    "MetaClip2Model": "metaclip_2",
    "AltCLIPModel": "altclip",
    "ChineseCLIPModel": "chinese_clip",
}


def _families(shortcut):
    return [FAMILY_OF[name] for name, paths in FAST_PATHS.items() if shortcut in paths]


@pytest.fixture(scope="module")
def family_path(tmp_path_factory):
    made = {}

    def path(family):
        if family not in made:
            folder = tmp_path_factory.mktemp(family)
            made[family] = make_tiny_clip(folder, family=family)
        return made[family]

    return path


def test_every_class_with_a_shortcut_is_proven_here():
    assert set(FAST_PATHS) == set(FAMILY_OF)


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


@pytest.mark.parametrize("family", _families("quick_gelu"))
def test_fast_activations_replace_every_quick_gelu_and_keep_the_outputs(
    family, family_path
):
    stock = _stock(family_path(family))
    assert any(isinstance(m, QuickGELUActivation) for m in stock.modules())
    state = {k: v.clone() for k, v in stock.state_dict().items()}
    pixels = torch.randn(2, 3, 30, 30, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = stock.get_image_features(pixel_values=pixels).pooler_output
    use_fast_activations(stock)
    assert not any(isinstance(m, QuickGELUActivation) for m in stock.modules())
    assert any(isinstance(m, QuickGELU) for m in stock.modules())
    assert stock.state_dict().keys() == state.keys()
    with torch.inference_mode():
        got = stock.get_image_features(pixel_values=pixels).pooler_output
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - set(FAMILY_OF.values())))
def test_other_families_take_transformers_own_forward(family, family_path):
    stock = _stock(family_path(family))
    assert fast_paths(stock) == set()
    keys = [type(m) for m in stock.modules()]
    assert [type(m) for m in use_fast_activations(stock).modules()] == keys


def test_shortcuts_are_chosen_by_class_not_by_attributes(tiny_clip_path):
    from transformers import CLIPModel

    class Derived(CLIPModel):  # same attributes, a class nobody proved
        pass

    model = Derived.from_pretrained(tiny_clip_path).eval()
    assert fast_paths(model) == set()
    seen = []
    model.vision_model.encoder.layers[-1].mlp.register_forward_hook(
        lambda module, args, out: seen.append(args[0].shape[1])
    )
    with torch.inference_mode():
        image_features(model, torch.randn(2, 3, 30, 30))
    assert seen == [model.vision_model.embeddings.num_positions]


def test_loaded_handles_use_the_fast_activations(tiny_clip):
    assert not any(
        isinstance(m, QuickGELUActivation) for m in tiny_clip.model.modules()
    )


@pytest.mark.parametrize("family", _families("class_token"))
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_image_features_match_get_image_features(family, family_path, batch):
    stock, ours = _stock(family_path(family)), _ours(family_path(family))
    pixels = torch.randn(batch, 3, 30, 30, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = stock.get_image_features(pixel_values=pixels).pooler_output
        got = image_features(ours, pixels)
    assert got.shape == expected.shape == (batch, stock.config.projection_dim)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", _families("prefix"))
def test_text_features_match_get_text_features(family, family_path, tiny_clip):
    stock, ours = _stock(family_path(family)), _ours(family_path(family))
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


@pytest.mark.parametrize("family", _families("class_token"))
def test_gradients_match_the_stock_forward(family, family_path):
    """Fine-tuning goes through the short path: same loss, same gradients."""
    # In float64, so that only a real difference shows above the rounding.
    stock = _stock(family_path(family)).double().train()
    ours = _ours(family_path(family)).double().train()
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randn(5, 3, 30, 30, generator=generator, dtype=torch.float64)
    target = torch.randn(5, stock.config.projection_dim, dtype=torch.float64)

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
        torch.testing.assert_close(mine[name], theirs[name], rtol=1e-9, atol=1e-10)


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


TEMPLATED = [
    template.format(label)
    for template in ("a photo of a {}.", "a blurry photo of the {}.", "itap of a {}.")
    for label in ("cat", "sea lion", "red fire truck", "dog", "x")
] + ["", "a", "a photo", "completely different words here", "a photo of a cat."]


@pytest.mark.parametrize("family", _families("prefix"))
@pytest.mark.parametrize("rows", [TEMPLATED, TEMPLATED[:1], TEMPLATED[::-1]])
def test_shared_prefix_text_features_match_get_text_features(
    family, family_path, tiny_clip, rows
):
    from sklearn_clip._backends.torch.tensors import tokenize

    stock, ours = _stock(family_path(family)), _ours(family_path(family))
    input_ids, mask = tokenize(tiny_clip, rows)
    with torch.inference_mode():
        expected = stock.get_text_features(
            input_ids=input_ids, attention_mask=mask
        ).pooler_output
        got = text_features(ours, input_ids, mask)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_templated_prompts_share_their_prefix(tiny_clip, monkeypatch):
    from sklearn_clip._backends.torch import forward as _forward
    from sklearn_clip._backends.torch.tensors import tokenize

    monkeypatch.setattr(_forward, "_MIN_GROUP_ROWS", 4)
    rows = [f"a photo of a {label}." for label in ("cat", "dog", "cow", "fox")]
    rows += [f"a drawing of the {label}." for label in ("cat", "dog", "cow", "fox")]
    input_ids, mask = tokenize(tiny_clip, rows)
    ids = [input_ids[i, : int(mask[i].sum())].tolist() for i in range(len(rows))]
    pooled = _forward._pooled_positions(tiny_clip.model.text_model, input_ids)
    groups, whole = _forward._prefix_groups(ids, pooled.tolist())
    assert sorted(sorted(g) for g, _ in groups) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert whole == []
    for group, shared in groups:
        # Every row of the group starts with the shared tokens; the rest differ.
        assert len({tuple(ids[i][:shared]) for i in group}) == 1
        assert shared >= 4 and all(shared <= pooled[i] for i in group)


@pytest.mark.parametrize("family", _families("prefix"))
def test_text_gradients_match_the_stock_forward(family, family_path, tiny_clip):
    from sklearn_clip._backends.torch.tensors import tokenize

    stock = _stock(family_path(family)).double().train()
    ours = _ours(family_path(family)).double().train()
    input_ids, mask = tokenize(tiny_clip, TEMPLATED)

    def gradients(model, features):
        (features.sum(dim=0) ** 2).sum().backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    theirs = gradients(
        stock,
        stock.get_text_features(input_ids=input_ids, attention_mask=mask).pooler_output,
    )
    mine = gradients(ours, text_features(ours, input_ids, mask))
    assert mine.keys() == theirs.keys() and len(mine) > 20
    for name in theirs:
        torch.testing.assert_close(mine[name], theirs[name], rtol=1e-9, atol=1e-10)


def test_both_text_orders_give_the_same_embeddings(tiny_clip):
    from sklearn_clip._encoding import cache as _cache

    _cache.text_memo.clear()
    by_length = tiny_clip.encode_texts(TEMPLATED, batch_size=4, order="length")
    _cache.text_memo.clear()
    by_prefix = tiny_clip.encode_texts(TEMPLATED, batch_size=4, order="prefix")
    np.testing.assert_allclose(by_prefix, by_length, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="order must be one of"):
        tiny_clip.encode_texts(TEMPLATED, order="random")
