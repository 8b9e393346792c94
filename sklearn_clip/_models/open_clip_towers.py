"""open_clip's towers as transformers tower configs, or the reason they do not map.

Each function takes one tower's part of an open_clip ``model_cfg`` and returns
the ``vision_config`` or ``text_config`` of the transformers class it maps
onto exactly, or raises :class:`OpenClipRefused`'s base ``ValueError`` with
the reason (the caller adds the folder and the list of what loads). The
defaults are open_clip's own (``CLIPVisionCfg`` and ``CLIPTextCfg``).
"""


class TowerRefused(ValueError):
    """One tower setting that has no exact counterpart."""


# Custom attention blocks: no transformers class computes them.
_CUSTOM_BLOCK = (
    "qk_norm",
    "scaled_cosine_attn",
    "scale_heads",
    "scale_attn_inner",
    "scale_attn",
    "scale_fc",
)
# Settings open_clip knows for each tower. Training-only ones (dropouts) are
# accepted: they do nothing at inference.
_COMMON = {
    *_CUSTOM_BLOCK,
    "width",
    "layers",
    "mlp_ratio",
    "ls_init_value",
    "act_kwargs",
    "norm_kwargs",
    "output_tokens",
    "final_ln_after_pool",
    "pool_type",
    "block_type",
}
_VISION_KEYS = _COMMON | {
    "head_width",
    "patch_size",
    "image_size",
    "patch_dropout",
    "attentional_pool",
    "attn_pooler_queries",
    "attn_pooler_heads",
    "no_ln_pre",
    "pos_embed_type",
    "timm_model_name",
    "timm_model_pretrained",
    "timm_pool",
    "timm_proj",
    "timm_proj_bias",
    "timm_drop",
    "timm_drop_path",
}
_TEXT_KEYS = _COMMON | {
    "context_length",
    "vocab_size",
    "hf_tokenizer_name",
    "tokenizer_mode",
    "tokenizer_kwargs",
    "heads",
    "embed_cls",
    "pad_id",
    "eos_id",
    "no_causal_mask",
    "proj_bias",
    "proj_type",
    "hf_model_name",
    "hf_model_pretrained",
    "hf_proj_type",
    "hf_pooler_type",
}
# The CLIP BPE: 49,408 tokens, the end of text the highest id (so open_clip's
# argmax pooling is transformers' first-end-token pooling).
CLIP_BPE_SIZE = 49408
CLIP_BPE_BOS, CLIP_BPE_EOS = 49406, 49407

# timm's SigLIP ViTs (timm.models.vision_transformer): heads and activation
# by name, which the weights cannot tell; the other sizes are read from the
# weights. "gelu" is exact, as timm's default; SigLIP 2's larger ports use tanh.
_TANH = "gelu_pytorch_tanh"
SIGLIP_TIMM = {
    "vit_base_patch16_siglip_224": (12, "gelu"),
    "vit_base_patch16_siglip_256": (12, "gelu"),
    "vit_base_patch16_siglip_384": (12, "gelu"),
    "vit_base_patch16_siglip_512": (12, "gelu"),
    "vit_base_patch32_siglip_256": (12, _TANH),
    "vit_large_patch16_siglip_256": (16, "gelu"),
    "vit_large_patch16_siglip_384": (16, "gelu"),
    "vit_large_patch16_siglip_512": (16, _TANH),
    "vit_so400m_patch14_siglip_224": (16, "gelu"),
    "vit_so400m_patch14_siglip_378": (16, "gelu"),
    "vit_so400m_patch14_siglip_384": (16, "gelu"),
    "vit_so400m_patch16_siglip_256": (16, _TANH),
    "vit_so400m_patch16_siglip_384": (16, _TANH),
    "vit_so400m_patch16_siglip_512": (16, _TANH),
    "vit_giantopt_patch16_siglip_256": (16, _TANH),
    "vit_giantopt_patch16_siglip_384": (16, _TANH),
}
_TIMM_EPS = 1e-6  # timm's ViTs use LayerNorm(eps=1e-6)


def refuse_keys(cfg, known, where):
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise TowerRefused(
            f"settings this converter does not know in {where}: {unknown}"
        )


def _check(cfg, where):
    """Refusals common to open_clip's own transformer towers."""
    if cfg.get("ls_init_value") is not None:
        raise TowerRefused(f"LayerScale (ls_init_value) in the {where}")
    custom = [key for key in _CUSTOM_BLOCK if cfg.get(key)]
    if custom or cfg.get("block_type") not in (None, "default"):
        raise TowerRefused(f"a custom attention block in the {where} ({custom})")
    if set(cfg.get("norm_kwargs") or {}) - {"eps"}:
        raise TowerRefused(f"LayerNorm settings {cfg['norm_kwargs']} in the {where}")


def activation(cfg, quick_gelu, where):
    """transformers' ``hidden_act`` for open_clip's ``act_layer``."""
    kwargs = dict(cfg.get("act_kwargs") or {})
    approximate = kwargs.pop("approximate", "none")
    if (
        kwargs
        or approximate not in ("none", "tanh")
        or (quick_gelu and approximate != "none")
    ):
        raise TowerRefused(
            f"activation settings {cfg.get('act_kwargs')} in the {where}"
        )
    if quick_gelu:
        return "quick_gelu"
    return _TANH if approximate == "tanh" else "gelu"


def _eps(cfg, default=1e-5):
    return float((cfg.get("norm_kwargs") or {}).get("eps", default))


def vit_vision(cfg, embed_dim, quick_gelu):
    """open_clip's ``VisionTransformer`` as a ``CLIPVisionConfig``."""
    refuse_keys(cfg, _VISION_KEYS, "vision_cfg")
    where = "image tower"
    if isinstance(cfg.get("layers", 12), list | tuple):
        raise TowerRefused("a ResNet image tower (ModifiedResNet)")
    if cfg.get("attentional_pool"):
        raise TowerRefused("attentional pooling in the image tower (CoCa-style)")
    _check(cfg, where)
    if cfg.get("no_ln_pre"):
        raise TowerRefused("an image tower without its pre-LayerNorm (no_ln_pre)")
    if cfg.get("pos_embed_type", "learnable") != "learnable":
        raise TowerRefused(f"position embeddings {cfg['pos_embed_type']!r}")
    if cfg.get("pool_type", "tok") != "tok":
        raise TowerRefused(
            f"image pooling {cfg['pool_type']!r} (transformers' CLIPModel pools "
            "the class token)"
        )
    size = cfg.get("image_size", 224)
    if not isinstance(size, int):
        if len(set(size)) != 1:
            raise TowerRefused(f"a non-square image size {list(size)}")
        size = size[0]
    width = int(cfg.get("width", 768))
    return {
        "hidden_size": width,
        "intermediate_size": int(width * float(cfg.get("mlp_ratio", 4.0))),
        "num_hidden_layers": int(cfg.get("layers", 12)),
        "num_attention_heads": width // int(cfg.get("head_width", 64)),
        "image_size": int(size),
        "patch_size": int(cfg.get("patch_size", 16)),
        "hidden_act": activation(cfg, quick_gelu, where),
        "layer_norm_eps": _eps(cfg),
        "projection_dim": embed_dim,
    }


def _text_common(cfg, quick_gelu, where):
    refuse_keys(cfg, _TEXT_KEYS, "text_cfg")
    if cfg.get("hf_model_name"):
        raise TowerRefused(f"a Hugging Face text tower ({cfg['hf_model_name']})")
    if cfg.get("embed_cls"):
        raise TowerRefused("a class token in the text tower (embed_cls)")
    if cfg.get("tokenizer_mode"):
        raise TowerRefused(f"tokenizer mode {cfg['tokenizer_mode']!r}")
    _check(cfg, where)
    width = int(cfg.get("width", 512))
    return {
        "vocab_size": int(cfg.get("vocab_size", CLIP_BPE_SIZE)),
        "hidden_size": width,
        "intermediate_size": int(width * float(cfg.get("mlp_ratio", 4.0))),
        "num_hidden_layers": int(cfg.get("layers", 12)),
        "num_attention_heads": int(cfg.get("heads", 8)),
        "max_position_embeddings": int(cfg.get("context_length", 77)),
        "hidden_act": activation(cfg, quick_gelu, where),
        "layer_norm_eps": _eps(cfg),
        "pad_token_id": int(cfg.get("pad_id", 0)),
    }


def clip_text(cfg, embed_dim, quick_gelu):
    """open_clip's ``TextTransformer`` with the CLIP BPE as a ``CLIPTextConfig``."""
    text = _text_common(cfg, quick_gelu, "text tower")
    if cfg.get("hf_tokenizer_name"):
        raise TowerRefused(
            f"a text tokenizer other than the CLIP BPE ({cfg['hf_tokenizer_name']})"
        )
    clean = (cfg.get("tokenizer_kwargs") or {}).get("clean", "lower")
    if set(cfg.get("tokenizer_kwargs") or {}) - {"clean"} or clean != "lower":
        raise TowerRefused(f"tokenizer settings {cfg.get('tokenizer_kwargs')}")
    if text["vocab_size"] != CLIP_BPE_SIZE:
        raise TowerRefused(f"a vocabulary of {text['vocab_size']} tokens")
    if cfg.get("pool_type", "argmax") != "argmax":
        raise TowerRefused(f"text pooling {cfg['pool_type']!r}")
    if cfg.get("proj_type", "linear") != "linear" or cfg.get("proj_bias"):
        raise TowerRefused("a text projection other than a plain linear map")
    return {
        **text,
        "bos_token_id": CLIP_BPE_BOS,
        "eos_token_id": CLIP_BPE_EOS,
        "projection_dim": embed_dim,
    }


def siglip_text(cfg, embed_dim, quick_gelu):
    """open_clip's SigLIP ``TextTransformer`` as a ``SiglipTextConfig``."""
    text = _text_common(cfg, quick_gelu, "text tower")
    if not cfg.get("hf_tokenizer_name"):
        raise TowerRefused("a SigLIP text tower without its hf_tokenizer_name")
    if not cfg.get("no_causal_mask") or cfg.get("pool_type") != "last":
        raise TowerRefused("a SigLIP text tower that is causal or not last-pooled")
    if cfg.get("proj_type", "linear") != "linear" or not cfg.get("proj_bias"):
        raise TowerRefused("a SigLIP text head other than a linear map with a bias")
    return {**text, "projection_size": embed_dim}


def siglip_vision(cfg, embed_dim, shapes):
    """A timm SigLIP ViT as a ``SiglipVisionConfig``, sized by its weights."""
    refuse_keys(cfg, _VISION_KEYS, "vision_cfg")
    name = cfg["timm_model_name"]
    if name not in SIGLIP_TIMM:
        raise TowerRefused(
            f"the timm image tower {name!r} (of timm's towers, the SigLIP ViTs "
            f"load: {', '.join(sorted(SIGLIP_TIMM))})"
        )
    if cfg.get("timm_pool") != "map" or cfg.get("timm_proj") != "none":
        raise TowerRefused(
            f"timm pooling {cfg.get('timm_pool')!r} with projection "
            f"{cfg.get('timm_proj')!r} (SigLIP's attention pooling, 'map' with "
            "'none', loads)"
        )
    heads, act = SIGLIP_TIMM[name]
    width, _, patch, _ = shapes["visual.trunk.patch_embed.proj.weight"]
    layers = {k.split(".")[3] for k in shapes if k.startswith("visual.trunk.blocks.")}
    size = int(cfg.get("image_size", 224))
    if (
        shapes["visual.trunk.pos_embed"][1] != (size // patch) ** 2
        or width != embed_dim
    ):
        raise TowerRefused(f"weights that do not fit {name} at {size} pixels")
    return {
        "hidden_size": width,
        "intermediate_size": shapes["visual.trunk.blocks.0.mlp.fc1.weight"][0],
        "num_hidden_layers": len(layers),
        "num_attention_heads": heads,
        "image_size": size,
        "patch_size": patch,
        "hidden_act": act,
        "layer_norm_eps": _TIMM_EPS,
    }
