"""Tiny random CLIP and SigLIP checkpoints, for examples, doctests and tests.

No pretrained CLIP weights ship with any package, and a machine without the hub
cannot download them. :func:`make_tiny_clip` builds a small randomly initialised
model from a config, with a real tokenizer and image processor configuration,
and writes it with ``save_pretrained``: everything downstream then goes through
the same ``from_pretrained`` path a real checkpoint takes.
"""

import json
import string
import tempfile
from pathlib import Path

import torch

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


def _build_tokenizer(context_length, words=()):
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
    )


def _build_model(
    family,
    tokenizer,
    *,
    image_size,
    patch_size,
    hidden_size,
    num_layers,
    num_heads,
    context_length,
):
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

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
    vision = {**tower, "image_size": image_size, "patch_size": patch_size}
    if family == "clip":
        config = CLIPConfig(
            text_config=text, vision_config=vision, projection_dim=hidden_size
        )
        return CLIPModel(config)
    config = SiglipConfig(text_config=text, vision_config=vision)
    return SiglipModel(config)


def _processor_config(family, image_size):
    if family == "clip":
        return {
            "image_processor_type": "CLIPImageProcessor",
            "do_resize": True,
            "size": {"shortest_edge": image_size},
            "do_center_crop": True,
            "crop_size": {"height": image_size, "width": image_size},
            "resample": 3,
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "do_convert_rgb": True,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711],
        }
    return {
        "image_processor_type": "SiglipImageProcessor",
        "do_resize": True,
        "size": {"height": image_size, "width": image_size},
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "do_convert_rgb": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }


def _write_checkpoint(target, model, tokenizer, family, image_size):
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    (target / "preprocessor_config.json").write_text(
        json.dumps(_processor_config(family, image_size), indent=2)
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
    random_state=0,
):
    """Write a tiny random CLIP (or SigLIP) checkpoint and return its directory.

    Parameters
    ----------
    path : str or pathlib.Path, default=None
        Where to write it. None writes to a temporary directory that is reused
        for the same arguments within this process.
    family : {"clip", "siglip"}, default="clip"
        CLIP (softmax over a learned temperature) or SigLIP (sigmoid with a bias).
    image_size, patch_size : int, default=30, 2
        Input resolution and ViT patch size.
    hidden_size, num_layers, num_heads : int, default=32, 2, 4
        Width (also the embedding size), depth and heads of both towers.
    context_length : int, default=32
        Maximum number of text tokens.
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
    ['config.json', 'model.safetensors', 'preprocessor_config.json',
     'tokenizer.json', 'tokenizer_config.json']
    """
    if family not in ("clip", "siglip"):
        raise ValueError(f"family must be 'clip' or 'siglip'; got {family!r}")
    options = {
        "image_size": image_size,
        "patch_size": patch_size,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "context_length": context_length,
    }
    key = (family, random_state, *sorted(options.items()))
    if path is None and key in _cache and Path(_cache[key]).is_dir():
        return _cache[key]
    target = (
        Path(path) if path is not None else Path(tempfile.mkdtemp(prefix="tiny-clip-"))
    )
    tokenizer = _build_tokenizer(context_length)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model = _build_model(family, tokenizer, **options)
    _write_checkpoint(target, model, tokenizer, family, image_size)
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
    _write_checkpoint(target, model, tokenizer, "clip", 224)
    return str(target)
