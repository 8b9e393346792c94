"""open_clip checkpoints: which layout a config describes, and what it maps to.

An open_clip checkpoint is a folder (or hub repo) holding
``open_clip_config.json`` (``model_cfg`` and ``preprocess_cfg``) and
``open_clip_model.safetensors``. :func:`read_open_clip` reads the config (and
the tensor shapes in the weights file's header, never the tensors) without
PyTorch and without open_clip, decides which of the layouts of
:data:`~sklearn_clip._models.families.OPEN_CLIP_LAYOUTS` it is, and returns the
transformers config, image-processor settings and tokenizer it converts to; a
config that does not map exactly is refused in one line naming the reason and
the layouts that load. The weights are mapped by
:mod:`sklearn_clip._backends.torch.open_clip`.
"""

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from sklearn_clip._models.families import OPEN_CLIP_LAYOUTS, SIGLIP_TEXT_LENGTH
from sklearn_clip._models.open_clip_towers import (
    TowerRefused,
    clip_text,
    refuse_keys,
    siglip_text,
    siglip_vision,
    vit_vision,
)

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
# open_clip's own vocabulary file of the CLIP BPE (it ships in its package).
BPE_VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# Pillow's filters for open_clip's interpolations ("random" is bicubic at
# inference, as open_clip's own transform has it).
_RESAMPLE = {"bicubic": 3, "bilinear": 2, "random": 3}
_TOP_KEYS = {
    "embed_dim",
    "vision_cfg",
    "text_cfg",
    "quick_gelu",
    "custom_text",
    "init_logit_scale",
    "init_logit_bias",
    "nonscalar_logit_scale",
    "cast_dtype",
    "output_dict",
}


class OpenClipRefused(ValueError):
    """An open_clip checkpoint whose layout does not map exactly."""


@dataclass(frozen=True)
class OpenClipCheckpoint:
    """What an open_clip checkpoint converts to.

    Attributes
    ----------
    layout : OpenClipLayout
        Its row of ``OPEN_CLIP_LAYOUTS``.
    config : dict
        The transformers config (``model_type``, ``text_config``,
        ``vision_config``), for ``AutoConfig.for_model``.
    image_settings : dict
        ``preprocessor_config.json`` settings equal to open_clip's transform.
    tokenizer : dict
        ``context_length``, ``pad_id``, ``clean`` (open_clip's text cleaning)
        and ``hf_name`` (None for the CLIP BPE).
    """

    layout: object
    config: dict
    image_settings: dict
    tokenizer: dict


def is_open_clip(directory):
    """A folder in open_clip's layout and not also in transformers' own.

    Repositories holding both (many LAION ones: a ``config.json`` with a
    model type and its own safetensors weights) load from transformers' files.

    Examples
    --------
    >>> from sklearn_clip._models.open_clip import is_open_clip
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> is_open_clip(make_tiny_clip())
    False
    """
    directory = Path(directory)
    if not (directory / CONFIG_NAME).exists():
        return False
    config = directory / "config.json"
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        model_type = None
    weights = {p.name for p in directory.glob("*.safetensors")} - {WEIGHTS_NAME}
    return not (model_type and weights)


def loads_from_open_clip():
    """The layouts that load, as error messages list them."""
    return "; ".join(layout.describe() for layout in OPEN_CLIP_LAYOUTS)


def refusal(directory, reason):
    return OpenClipRefused(
        f"{str(directory)!r} is an open_clip checkpoint that sklearn-clip cannot "
        f"convert exactly: {reason}. What loads from open_clip's layout: "
        f"{loads_from_open_clip()}."
    )


def check_open_clip_weights(directory):
    """Refuse an open_clip folder whose weights are pickled only, naming the
    safetensors file to ask for."""
    directory = Path(directory)
    if (directory / WEIGHTS_NAME).exists():
        return
    found = sorted(
        p.name for p in directory.iterdir() if p.name.startswith("open_clip_")
    )
    found = [name for name in found if name != CONFIG_NAME]
    listed = f" (found {', '.join(found)})" if found else ""
    raise OSError(
        f"{str(directory)!r} holds no {WEIGHTS_NAME}{listed}: sklearn-clip reads "
        "open_clip weights only from that safetensors file, because pickled "
        "weights (.bin, .pt, .pth) can run code when read. Ask for "
        f"{WEIGHTS_NAME} (open_clip's push_to_hf_hub writes it), or convert once, "
        "where you trust the file: safetensors.torch.save_file(state_dict, "
        f"'{WEIGHTS_NAME}')."
    )


def weight_shapes(path):
    """``{name: shape}`` from a safetensors file's header; no tensor is read."""
    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
    header.pop("__metadata__", None)
    return {name: tuple(entry["shape"]) for name, entry in header.items()}


def read_open_clip(directory):
    """The conversion of the open_clip checkpoint in ``directory``.

    Raises
    ------
    OpenClipRefused
        For a layout that does not map exactly, in one line naming the
        reason and the layouts that load.
    """
    directory = Path(directory)
    try:
        saved = json.loads((directory / CONFIG_NAME).read_text())
        model_cfg = saved["model_cfg"]
    except (ValueError, KeyError, TypeError):
        raise refusal(directory, f"{CONFIG_NAME} holds no 'model_cfg'") from None
    check_open_clip_weights(directory)
    try:
        layout, config = _convert(model_cfg, weight_shapes(directory / WEIGHTS_NAME))
        image_settings = _image_settings(model_cfg, saved.get("preprocess_cfg") or {})
    except TowerRefused as exc:
        raise refusal(directory, str(exc)) from None
    except KeyError as exc:
        raise refusal(directory, f"no {exc} in its config or weights") from None
    text = model_cfg["text_cfg"]
    tokenizer = {
        "context_length": int(text.get("context_length", 77)),
        "pad_id": int(text.get("pad_id", 0)),
        "clean": (text.get("tokenizer_kwargs") or {}).get(
            "clean", "whitespace" if text.get("hf_tokenizer_name") else "lower"
        ),
        "hf_name": text.get("hf_tokenizer_name"),
    }
    return OpenClipCheckpoint(layout, config, image_settings, tokenizer)


def _layout(name):
    return next(layout for layout in OPEN_CLIP_LAYOUTS if layout.name == name)


def _convert(model_cfg, shapes):
    """``(layout, transformers config)`` of a ``model_cfg``; refuses the rest."""
    if "multimodal_cfg" in model_cfg:
        raise TowerRefused("a CoCa model (multimodal_cfg: a captioning decoder)")
    refuse_keys(model_cfg, _TOP_KEYS, "model_cfg")
    vision, text = model_cfg.get("vision_cfg") or {}, model_cfg.get("text_cfg") or {}
    embed_dim = int(model_cfg["embed_dim"])
    quick_gelu = bool(model_cfg.get("quick_gelu", False))
    has_bias = model_cfg.get("init_logit_bias") is not None
    if vision.get("timm_model_name"):
        vision_config = siglip_vision(vision, embed_dim, shapes)
        text_config = siglip_text(text, embed_dim, quick_gelu)
        if not has_bias:
            raise TowerRefused("a SigLIP model without a logit bias")
        if int(text_config["max_position_embeddings"]) != SIGLIP_TEXT_LENGTH:
            raise TowerRefused(
                f"a SigLIP text context of {text['context_length']} tokens "
                f"(the family pads to {SIGLIP_TEXT_LENGTH})"
            )
        layout = _layout("timm-siglip")
    else:
        vision_config = vit_vision(vision, embed_dim, quick_gelu)
        text_config = clip_text(text, embed_dim, quick_gelu)
        if has_bias:
            raise TowerRefused("a logit bias on a softmax (CLIP-style) model")
        bidirectional = bool(text.get("no_causal_mask", False))
        layout = _layout("vit-bidirectional-text" if bidirectional else "vit")
    config = {
        "model_type": layout.model_type,
        "text_config": text_config,
        "vision_config": vision_config,
    }
    if layout.name != "timm-siglip":  # CLIPConfig's shared embedding size
        config["projection_dim"] = embed_dim
    return layout, config


def _image_settings(model_cfg, preprocess):
    """A transformers image processor's settings equal to open_clip's transform."""
    size = model_cfg["vision_cfg"].get("image_size", 224)
    size = int(size if isinstance(size, int) else size[0])
    mode = preprocess.get("resize_mode", "shortest")
    interpolation = preprocess.get("interpolation", "bicubic")
    if mode not in ("shortest", "squash"):
        raise TowerRefused(
            f"resize_mode {mode!r} (padding to a square); 'shortest' and 'squash' load"
        )
    if interpolation not in _RESAMPLE:
        raise TowerRefused(f"interpolation {interpolation!r}")
    mean = preprocess.get("mean") or _OPENAI_MEAN
    std = preprocess.get("std") or _OPENAI_STD
    mean, std = (
        [float(v)] * 3 if isinstance(v, int | float) else [float(x) for x in v]
        for v in (mean, std)
    )
    square = {"height": size, "width": size}
    return {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": size} if mode == "shortest" else square,
        "resample": _RESAMPLE[interpolation],
        "do_center_crop": mode == "shortest",
        "crop_size": square,
        # torchvision's CenterCrop rounds its offsets (ImageConfig.crop_round).
        "crop_offsets": "round",
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": mean,
        "image_std": std,
        "do_convert_rgb": True,
    }
