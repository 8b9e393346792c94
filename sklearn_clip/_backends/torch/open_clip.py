"""open_clip weights as a transformers model: the key map, and bidirectional text.

:func:`read_open_clip_model` builds the transformers model that
:func:`sklearn_clip._models.open_clip.read_open_clip` chose, and fills every
tensor from ``open_clip_model.safetensors`` by the key map below (attention
``in_proj`` and timm's ``qkv`` split into q, k, v; projections transposed;
the attention pool's ``q`` and ``kv`` joined into one ``in_proj``), refusing
weights that leave a tensor unfilled or unused. A text tower that attends both
ways (MobileCLIP's ``no_causal_mask``) runs transformers' own classes through
a registered attention function, :data:`BIDIRECTIONAL`, never a copied class.
"""

import logging
import re

import torch
from transformers import AttentionInterface, AutoConfig, AutoModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from sklearn_clip._models.open_clip import WEIGHTS_NAME, refusal

# The attention implementation of a bidirectional text tower: scaled dot
# product attention over every position, padding included, as open_clip runs
# it (the mask a caller passes is not applied; texts are padded with the pad
# id to the full context). Vision towers run it unchanged: they have no mask.
BIDIRECTIONAL = "sklearn_clip_bidirectional"
logger = logging.getLogger("sklearn_clip")


def _bidirectional_attention(module, query, key, value, attention_mask, **kwargs):
    kwargs.pop("is_causal", None)
    return sdpa_attention_forward(
        module, query, key, value, None, is_causal=False, **kwargs
    )


AttentionInterface.register(BIDIRECTIONAL, _bidirectional_attention)

_BLOCK = [
    (r"ln_1\.", "layer_norm1."),
    (r"ln_2\.", "layer_norm2."),
    (r"attn\.out_proj\.", "self_attn.out_proj."),
    (r"mlp\.c_fc\.", "mlp.fc1."),
    (r"mlp\.c_proj\.", "mlp.fc2."),
    (r"norm1\.", "layer_norm1."),
    (r"norm2\.", "layer_norm2."),
    (r"attn\.proj\.", "self_attn.out_proj."),
    (r"mlp\.fc1\.", "mlp.fc1."),
    (r"mlp\.fc2\.", "mlp.fc2."),
]
# open_clip key prefix -> transformers key prefix, by tower.
_VIT = [
    ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"),
    ("visual.class_embedding", "vision_model.embeddings.class_embedding"),
    (
        "visual.positional_embedding",
        "vision_model.embeddings.position_embedding.weight",
    ),
    ("visual.ln_pre.", "vision_model.pre_layrnorm."),
    ("visual.ln_post.", "vision_model.post_layernorm."),
    ("visual.transformer.resblocks.", "vision_model.encoder.layers."),
]
_TIMM = [
    ("visual.trunk.patch_embed.proj.", "vision_model.embeddings.patch_embedding."),
    ("visual.trunk.blocks.", "vision_model.encoder.layers."),
    ("visual.trunk.norm.", "vision_model.post_layernorm."),
    ("visual.trunk.attn_pool.proj.", "vision_model.head.attention.out_proj."),
    ("visual.trunk.attn_pool.norm.", "vision_model.head.layernorm."),
    ("visual.trunk.attn_pool.mlp.", "vision_model.head.mlp."),
]
_TEXT = [
    ("token_embedding.", "text_model.embeddings.token_embedding."),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
    ("transformer.resblocks.", "text_model.encoder.layers."),
    ("ln_final.", "text_model.final_layer_norm."),
]


def _renamed(name, prefixes):
    for old, new in prefixes:
        if name.startswith(old):
            rest = name[len(old) :]
            if new.endswith("layers."):
                index, _, rest = rest.partition(".")
                for pattern, replacement in _BLOCK:
                    if re.match(pattern, rest):
                        rest = re.sub(pattern, replacement, rest, count=1)
                        break
                return f"{new}{index}.{rest}"
            return new + rest
    return None


def _split_qkv(name, tensor, prefixes):
    """``in_proj_*`` / ``qkv.*`` of a block -> its q, k, v projections."""
    match = re.search(r"attn\.(in_proj_|qkv\.)(weight|bias)$", name)
    if match is None:
        return None
    block = _renamed(name[: match.start()] + "ln_1.x", prefixes).rsplit(".", 2)[0]
    parts = tensor.chunk(3, dim=0)
    return {
        f"{block}.self_attn.{p}_proj.{match.group(2)}": part
        for p, part in zip("qkv", parts, strict=True)
    }


def _special(name, tensor, text_prefix):
    """Tensors that change shape or merge, rather than only their name."""
    if name == "visual.proj":
        return {"visual_projection.weight": tensor.T}
    if name == text_prefix + "text_projection":
        return {"text_projection.weight": tensor.T}
    if name.startswith(text_prefix + "text_projection."):
        return {"text_model.head." + name.rsplit(".", 1)[1]: tensor}
    if name == "visual.trunk.pos_embed":
        return {"vision_model.embeddings.position_embedding.weight": tensor[0]}
    if name == "visual.trunk.attn_pool.latent":
        return {"vision_model.head.probe": tensor}
    if name in ("logit_scale", "logit_bias"):
        return {name: tensor}
    return None


def convert_state_dict(tensors, layout):
    """open_clip's tensors under transformers' names, in transformers' shapes."""
    timm = layout.name == "timm-siglip"
    # open_clip's CustomTextCLIP keeps its text tower under "text."; CLIP
    # keeps it at the top level (either may be bidirectional).
    text_prefix = "text." if any(k.startswith("text.") for k in tensors) else ""
    prefixes = (_TIMM if timm else _VIT) + [
        (text_prefix + old, new) for old, new in _TEXT
    ]
    converted, pool = {}, {}
    for name, tensor in tensors.items():
        if name.startswith("visual.trunk.attn_pool.") and name.rsplit(".", 2)[1] in (
            "q",
            "kv",
        ):
            pool[name.rsplit(".", 2)[1] + "." + name.rsplit(".", 1)[1]] = tensor
            continue
        mapped = _special(name, tensor, text_prefix) or _split_qkv(
            name, tensor, prefixes
        )
        if mapped is None:
            new = _renamed(name, prefixes)
            mapped = {new if new is not None else f"<unmapped> {name}": tensor}
        converted.update(mapped)
    for kind in ("weight", "bias"):
        if f"q.{kind}" in pool:
            joined = torch.cat([pool[f"q.{kind}"], pool[f"kv.{kind}"]])
            converted[f"vision_model.head.attention.in_proj_{kind}"] = joined
    return converted


def is_bidirectional(model):
    """Whether ``model``'s text tower attends both ways (saved in its config)."""
    return getattr(model.config.text_config, "is_causal", True) is False


def run_bidirectional(model):
    """Run ``model`` through :data:`BIDIRECTIONAL` where its config says so
    (a saved conversion, read back by ``from_pretrained``); returns ``model``."""
    if is_bidirectional(model):
        model.set_attn_implementation(BIDIRECTIONAL)
    return model


def build_model(conversion):
    """The transformers model of a conversion, its weights not initialised."""
    from transformers.initialization import no_init_weights

    settings = dict(conversion.config)
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    options = {}
    if conversion.layout.bidirectional_text:
        # Saved with the model, so that it is read back bidirectional.
        config.text_config.is_causal = False
        options["attn_implementation"] = BIDIRECTIONAL
    with no_init_weights():
        return AutoModel.from_config(config, **options)


def read_open_clip_model(directory, conversion):
    """The transformers model of the open_clip checkpoint in ``directory``."""
    from safetensors.torch import load_file

    weights = load_file(str(directory / WEIGHTS_NAME))
    tensors = convert_state_dict(weights, conversion.layout)
    model = build_model(conversion)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unused = sorted(set(tensors) - set(expected))
    wrong = sorted(
        name
        for name in set(expected) & set(tensors)
        if expected[name].numel() != tensors[name].numel()
    )
    if missing or unused or wrong:
        listed = ", ".join((missing + unused + wrong)[:4])
        raise refusal(
            directory,
            f"its weights do not fit the {conversion.layout.name} layout "
            f"({len(missing)} missing, {len(unused)} unused, {len(wrong)} "
            f"misshapen: {listed})",
        )
    tensors = {
        name: tensor.reshape(expected[name].shape) for name, tensor in tensors.items()
    }
    # At the precision the weights are stored in (as from_pretrained keeps it).
    stored = [t.dtype for t in tensors.values() if t.is_floating_point()]
    model = model.to(dtype=max(set(stored), key=stored.count))
    model.load_state_dict(tensors, strict=True)
    return model.eval()


def read_open_clip_checkpoint(directory, local_files_only=None):
    """``(model, tokenizer, image processor)`` of an open_clip checkpoint.

    Everything that can be refused from the config is, before any tensor is
    read; then weights that do not fit the layout are.
    """
    from pathlib import Path

    from sklearn_clip._models.loading import image_processor_from_settings
    from sklearn_clip._models.open_clip import read_open_clip
    from sklearn_clip._models.open_clip_tokenizer import open_clip_tokenizer

    directory = Path(directory)
    conversion = read_open_clip(directory)
    tokenizer = open_clip_tokenizer(
        directory, conversion, local_files_only=local_files_only
    )
    image_processor = image_processor_from_settings(conversion.image_settings)
    model = read_open_clip_model(directory, conversion)
    logger.info(
        "%s: open_clip's %s layout, converted to %s; it is saved (save_pretrained, "
        "fine-tuned models, exports) in transformers' layout.",
        directory,
        conversion.layout.name,
        type(model).__name__,
    )
    return model, tokenizer, image_processor
