"""Tiny random CLIP-family checkpoints, for examples, doctests and tests.

No pretrained CLIP weights ship with any package, and a machine without the hub
cannot download them. :func:`make_tiny_clip` builds a small randomly initialised
model from a config, with a real tokenizer and image processor configuration,
and writes it with ``save_pretrained``: everything downstream then goes through
the same ``from_pretrained`` path a real checkpoint takes.
"""

import string
import tempfile
from pathlib import Path

import torch

from sklearn_clip._models.loading import SIGLIP_TEXT_LENGTH, SUPPORTED_FAMILIES

# Whole-word tokens for the words the generated datasets and prompts use; any
# other word falls back to characters, so every text gets distinct ids.
_WORDS = (
    "a an the of on in at is it this that with and or to photo picture image "
    "drawing rendering shape something thing object small large big tiny left "
    "right top bottom middle centre center red green blue yellow purple orange "
    "white black grey gray pink brown cyan circle square triangle cross diamond "
    "star ring dog cat car bird one two three some kind type colour color "
    "background"
).split()
_SPECIAL = ("<pad>", "<unk>", "<bos>", "<eos>")

_cache = {}


def _build_tokenizer(context_length, words=(), *, attention_mask=True):
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = {token: i for i, token in enumerate(_SPECIAL)}
    for token in [*_WORDS, *words, *chars, *(f"##{c}" for c in chars)]:
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(
        WordPiece(vocab, unk_token="<unk>", max_input_chars_per_word=64)
    )
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase()]
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>",
        special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=context_length,
        model_input_names=(
            ["input_ids", "attention_mask"] if attention_mask else ["input_ids"]
        ),
    )


def _towers(tokenizer, *, hidden_size, num_layers, num_heads, context_length):
    """Text and vision settings shared by the transformer towers of every family."""
    tower = {
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size + 5,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
    }
    text = {
        **tower,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": context_length,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        # CLIP pools the text at its end token: the config must name the
        # tokenizer's own end token, or it pools at the wrong position.
        "eos_token_id": tokenizer.eos_token_id,
    }
    return tower, text


def _efficientnet(image_size, hidden_size):
    # ALIGN's image tower is an EfficientNet; its last block's channels are
    # the image embedding, so they match the text projection.
    return {
        "image_size": image_size,
        "width_coefficient": 1.0,
        "depth_coefficient": 1.0,
        "hidden_dim": 4 * hidden_size,
        "kernel_sizes": (3, 3),
        "in_channels": (32, 16),
        "out_channels": (16, hidden_size),
        "strides": (1, 2),
        "num_block_repeats": (1, 1),
        "expand_ratios": (1, 2),
        "depthwise_padding": [],
    }


def _model_config(family, tokenizer, *, image_size, patch_size, **shape):
    """The family's config, small; text positions as the family counts them."""
    import transformers

    tower, text = _towers(tokenizer, **shape)
    hidden = shape["hidden_size"]
    vision = {**tower, "image_size": image_size, "patch_size": patch_size}
    name, options = {
        "clip": ("CLIPConfig", {"projection_dim": hidden}),
        "metaclip_2": ("MetaClip2Config", {"projection_dim": hidden}),
        "chinese_clip": ("ChineseCLIPConfig", {"projection_dim": hidden}),
        "siglip": ("SiglipConfig", {}),
        "siglip2": ("Siglip2Config", {}),
        "align": ("AlignConfig", {"projection_dim": hidden}),
        "altclip": ("AltCLIPConfig", {"projection_dim": hidden}),
        "blip": ("BlipConfig", {"projection_dim": hidden}),
    }[family]
    if family == "siglip2":
        # NaFlex: no fixed size; up to this many patches, in any aspect ratio.
        vision = {**tower, "patch_size": patch_size}
        vision["num_patches"] = (image_size // patch_size) ** 2
    elif family == "align":
        vision = _efficientnet(image_size, hidden)
    elif family == "altclip":
        # XLM-R counts positions from the padding id + 1, and projects itself.
        text["max_position_embeddings"] += tokenizer.pad_token_id + 1
        text["project_dim"] = hidden
    elif family == "blip":
        text["encoder_hidden_size"] = hidden
        text["sep_token_id"] = tokenizer.eos_token_id
    return getattr(transformers, name)(
        text_config=text, vision_config=vision, **options
    )


def _build_model(family, tokenizer, **options):
    from transformers import AutoModel

    from sklearn_clip._models.loading import quiet_transformers

    with quiet_transformers():
        return AutoModel.from_config(_model_config(family, tokenizer, **options))


# Each family's own image processor (the Pillow variant: it needs no
# torchvision) and its settings at this image size.
def _image_processor(family, image_size, patch_size):
    import transformers

    square = {"height": image_size, "width": image_size}
    openai = {
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
    }
    clip = {"size": {"shortest_edge": image_size}, "crop_size": square, **openai}
    name, settings = {
        "clip": ("CLIPImageProcessorPil", clip),
        "metaclip_2": ("CLIPImageProcessorPil", clip),
        "altclip": ("CLIPImageProcessorPil", clip),
        "chinese_clip": ("ChineseCLIPImageProcessorPil", clip),
        "siglip": ("SiglipImageProcessorPil", {"size": square}),
        "siglip2": (
            "Siglip2ImageProcessorPil",
            {
                "patch_size": patch_size,
                "max_num_patches": (image_size // patch_size) ** 2,
            },
        ),
        "align": (
            "EfficientNetImageProcessorPil",
            {
                "size": {"height": image_size + 4, "width": image_size + 4},
                "crop_size": square,
                "do_center_crop": True,
                "rescale_offset": True,
                "include_top": False,
            },
        ),
        "blip": ("BlipImageProcessorPil", {"size": square, **openai}),
    }[family]
    return getattr(transformers, name)(**settings)


# Families whose real tokenizers return no attention mask: their text tower
# attends to the padding, and the toy tokenizer says so the same way.
_NO_ATTENTION_MASK = ("siglip", "siglip2")
# Every family sklearn-clip supports has a tiny checkpoint.
FAMILIES = SUPPORTED_FAMILIES
LAYOUTS = ("transformers5", "legacy")


def _write_checkpoint(
    target, model, tokenizer, image_processor, layout="transformers5"
):
    """Write as transformers 5 does, or with the legacy preprocessor file."""
    from sklearn_clip._models.loading import family_processor, quiet_transformers

    target.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(target, safe_serialization=True)
        if layout == "legacy":
            tokenizer.save_pretrained(target)
            image_processor.save_pretrained(target)
        else:
            model_type = model.config.model_type
            family_processor(model_type, image_processor, tokenizer).save_pretrained(
                target
            )


def make_tiny_clip(
    path=None,
    *,
    family="clip",
    image_size=30,
    patch_size=2,
    hidden_size=32,
    num_layers=2,
    num_heads=4,
    context_length=32,
    layout="transformers5",
    random_state=0,
):
    """Write a tiny random CLIP-family checkpoint and return its directory.

    Parameters
    ----------
    path : str or pathlib.Path, default=None
        Where to write it. None writes to a temporary directory that is reused
        for the same arguments within this process.
    family : {"clip", "metaclip_2", "siglip", "siglip2", "align", "altclip", \
            "chinese_clip", "blip"}, default="clip"
        The transformers model type. ``"siglip2"`` is the NaFlex
        (variable-resolution) model; SigLIP 2's fixed-resolution checkpoints
        are ``"siglip"`` models. SigLIP families get a 64-token context,
        what transformers' zero-shot pipeline pads their text to.
    image_size, patch_size : int, default=30, 2
        Input resolution and ViT patch size (ALIGN's EfficientNet has no
        patches; SigLIP 2 takes up to ``(image_size // patch_size) ** 2``
        patches).
    hidden_size, num_layers, num_heads : int, default=32, 2, 4
        Width (also the embedding size), depth and heads of the towers.
    context_length : int, default=32
        Maximum number of text tokens.
    layout : {"transformers5", "legacy"}, default="transformers5"
        ``"transformers5"`` writes what the family's processor writes with
        ``save_pretrained`` in transformers 5 (the image settings inside
        ``processor_config.json``); ``"legacy"`` writes the separate
        ``preprocessor_config.json`` of older checkpoints.
    random_state : int, default=0
        Seed of the random initialisation.

    Returns
    -------
    str
        A directory that :func:`sklearn_clip.load_model` and every estimator's
        ``model=`` accept.

    Examples
    --------
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> import os
    >>> sorted(os.listdir(make_tiny_clip()))  # doctest: +NORMALIZE_WHITESPACE
    ['config.json', 'model.safetensors', 'processor_config.json',
     'tokenizer.json', 'tokenizer_config.json']
    >>> sorted(os.listdir(make_tiny_clip(layout="legacy")))
    ... # doctest: +NORMALIZE_WHITESPACE
    ['config.json', 'model.safetensors', 'preprocessor_config.json',
     'tokenizer.json', 'tokenizer_config.json']
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    if family in ("siglip", "siglip2"):
        context_length = max(context_length, SIGLIP_TEXT_LENGTH)
    options = {
        "image_size": image_size,
        "patch_size": patch_size,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "context_length": context_length,
    }
    key = (family, layout, random_state, *sorted(options.items()))
    if path is None and key in _cache and Path(_cache[key]).is_dir():
        return _cache[key]
    target = (
        Path(path) if path is not None else Path(tempfile.mkdtemp(prefix="tiny-clip-"))
    )
    tokenizer = _build_tokenizer(
        context_length, attention_mask=family not in _NO_ATTENTION_MASK
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model = _build_model(family, tokenizer, **options)
    processor = _image_processor(family, image_size, patch_size)
    _write_checkpoint(target, model, tokenizer, processor, layout)
    if path is None:
        _cache[key] = str(target)
    return str(target)


# The shapes of the released OpenAI checkpoints: same compute, random weights.
ARCHITECTURES = {
    "ViT-B/32": {"vision": (768, 12, 12, 32), "text": (512, 12, 8), "dim": 512},
    "ViT-B/16": {"vision": (768, 12, 12, 16), "text": (512, 12, 8), "dim": 512},
    "ViT-L/14": {"vision": (1024, 24, 16, 14), "text": (768, 12, 12), "dim": 768},
}


def make_random_clip(path=None, *, architecture="ViT-B/32", words=(), random_state=0):
    """Write a full-size CLIP with random weights, for benchmarks.

    It has the layer sizes of the released checkpoint named by
    ``architecture`` (224-pixel images, 77-token context), so it costs the same
    compute; only the tokenizer is the small one of :func:`make_tiny_clip`,
    which splits words it does not know into characters.

    Parameters
    ----------
    path : str or pathlib.Path, default=None
        Where to write it; None uses a new temporary directory.
    architecture : {"ViT-B/32", "ViT-B/16", "ViT-L/14"}, default="ViT-B/32"
        The released checkpoint whose layer sizes it copies.
    words : sequence of str, default=()
        More whole-word tokens. CLIP's 49,408-token vocabulary holds most
        common English words whole; give the words of a benchmark's texts so
        that they take as many tokens as with the released tokenizer.
    random_state : int, default=0
        Seed of the random initialisation.

    Returns
    -------
    str
        The model directory.

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> from sklearn_clip.toy import make_random_clip
    >>> with tempfile.TemporaryDirectory() as tmp:  # about 600 MB of weights
    ...     path = make_random_clip(tmp, architecture="ViT-B/32")
    ...     config = json.loads((Path(path) / "config.json").read_text())
    >>> config["vision_config"]["patch_size"], config["projection_dim"]
    (32, 512)
    """
    from transformers import CLIPConfig, CLIPModel

    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"architecture must be one of {sorted(ARCHITECTURES)}; got {architecture!r}"
        )
    shape = ARCHITECTURES[architecture]
    width, layers, heads, patch = shape["vision"]
    text_width, text_layers, text_heads = shape["text"]
    tokenizer = _build_tokenizer(77, [w.lower() for w in words])
    config = CLIPConfig(
        vision_config={
            "hidden_size": width,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "intermediate_size": 4 * width,
            "patch_size": patch,
            "image_size": 224,
        },
        text_config={
            "hidden_size": text_width,
            "num_hidden_layers": text_layers,
            "num_attention_heads": text_heads,
            "intermediate_size": 4 * text_width,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 77,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        projection_dim=shape["dim"],
    )
    target = Path(path) if path is not None else Path(tempfile.mkdtemp(prefix="clip-"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model = CLIPModel(config)
    processor = _image_processor("clip", 224, shape["vision"][3])
    _write_checkpoint(target, model, tokenizer, processor)
    return str(target)
