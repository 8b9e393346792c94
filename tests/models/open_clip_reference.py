"""open_clip itself, as the reference for the open_clip conversions.

open_clip imports torchvision at module level, and torchvision cannot be
installed beside this CPU build of PyTorch. :func:`open_clip_module` gives it a
minimal stand-in for the torchvision names it imports, for the tests only
(never in the package): the inference transforms (``Resize``, ``CenterCrop``,
``ToTensor``, ``Normalize``, ``Compose``) do on Pillow images what
torchvision's own do (Pillow's resize, torchvision's rounding of the crop
offsets); the training-only names are inert. The stand-in is in
``sys.modules`` only while open_clip (and timm, which open_clip imports)
are imported, so nothing else sees a torchvision.

:func:`write_checkpoints` builds tiny random open_clip models with
``open_clip.create_model`` and writes them as open_clip's hub layout does.
"""

import enum
import functools
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    LANCZOS = "lanczos"
    BOX = "box"
    HAMMING = "hamming"
    NEAREST_EXACT = "nearest-exact"


_PIL = {
    InterpolationMode.NEAREST: Image.Resampling.NEAREST,
    InterpolationMode.BILINEAR: Image.Resampling.BILINEAR,
    InterpolationMode.BICUBIC: Image.Resampling.BICUBIC,
    InterpolationMode.LANCZOS: Image.Resampling.LANCZOS,
}


class _Inert:
    """A training-only transform: built by open_clip, never run here."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class Resize:
    def __init__(self, size, interpolation=InterpolationMode.BILINEAR, **_):
        self.size, self.interpolation = size, interpolation

    def __call__(self, image):
        width, height = image.size
        if isinstance(self.size, int):
            short, long = sorted((width, height))
            new_short, new_long = self.size, int(self.size * long / short)
            size = (new_short, new_long) if width <= height else (new_long, new_short)
        else:
            size = (self.size[1], self.size[0])
        if size == image.size:
            return image
        return image.resize(size, _PIL[self.interpolation])


class CenterCrop:
    def __init__(self, size):
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def __call__(self, image):
        crop_h, crop_w = self.size
        width, height = image.size
        if crop_w > width or crop_h > height:
            padded = Image.new(image.mode, (max(width, crop_w), max(height, crop_h)))
            padded.paste(image, ((crop_w - width) // 2, (crop_h - height) // 2))
            image, (width, height) = padded, padded.size
        top = int(round((height - crop_h) / 2.0))
        left = int(round((width - crop_w) / 2.0))
        return image.crop((left, top, left + crop_w, top + crop_h))


def to_tensor(image):
    pixels = torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1)
    return pixels.float().div(255)


class ToTensor:
    def __call__(self, image):
        return to_tensor(image)


class Normalize:
    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def __call__(self, tensor):
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (tensor - mean) / std


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, image):
        for transform in self.transforms:
            image = transform(image)
        return image


class _Module(types.ModuleType):
    """A stand-in module: any other name it is asked for is an inert class
    (timm's dataset and augmentation helpers, which import them)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (_Inert,), {})
        setattr(self, name, value)
        return value


def _stand_in():
    """The torchvision modules open_clip and timm import, by name."""
    names = [
        "torchvision",
        "torchvision.transforms",
        "torchvision.ops",
        "torchvision.datasets",
    ]
    modules = {name: _Module(name) for name in names}
    for module in modules.values():
        module.__path__ = []
    functional = _Module("torchvision.transforms.functional")
    functional.to_tensor = to_tensor
    functional.InterpolationMode = InterpolationMode
    misc = _Module("torchvision.ops.misc")
    misc.FrozenBatchNorm2d = type("FrozenBatchNorm2d", (_Inert,), {})
    transforms = modules["torchvision.transforms"]
    for cls in (InterpolationMode, Resize, CenterCrop, ToTensor, Normalize, Compose):
        setattr(transforms, cls.__name__, cls)
    for name in ("RandomResizedCrop", "ColorJitter", "Grayscale"):
        setattr(transforms, name, type(name, (_Inert,), {}))
    transforms.functional = functional
    modules["torchvision"].transforms = transforms
    modules["torchvision"].ops = modules["torchvision.ops"]
    modules["torchvision"].datasets = modules["torchvision.datasets"]
    modules["torchvision.ops"].misc = misc
    modules["torchvision.transforms.functional"] = functional
    modules["torchvision.ops.misc"] = misc
    return modules


@functools.cache
def open_clip_module():
    """open_clip, imported once beside the torchvision stand-in."""
    # transformers decides once whether torchvision is installed: ask it
    # before the stand-in exists, so that it keeps answering no.
    from transformers.utils.import_utils import is_torchvision_available

    is_torchvision_available()
    stand_in = _stand_in()
    sys.modules.update(stand_in)
    try:
        import timm  # noqa: F401, I001 - first: open_clip imports it optionally
        import open_clip
    finally:
        for name in stand_in:
            sys.modules.pop(name, None)
    return open_clip


# Tiny random models, one per mapped layout (open_clip model_cfg values).
_TEXT = {"context_length": 77, "vocab_size": 49408, "heads": 4, "layers": 2}
_OPENAI = {}  # open_clip's defaults: OpenAI mean and std, bicubic, shortest
CONFIGS = {
    "vit-gelu-64": (
        {
            "embed_dim": 32,
            "vision_cfg": {
                "image_size": 32,
                "layers": 2,
                "width": 64,
                "patch_size": 8,
                "head_width": 16,
            },
            "text_cfg": {**_TEXT, "width": 32},
        },
        _OPENAI,
    ),
    "vit-gelu-96": (
        {
            "embed_dim": 48,
            "vision_cfg": {
                "image_size": 48,
                "layers": 3,
                "width": 96,
                "patch_size": 16,
                "head_width": 32,
            },
            "text_cfg": {**_TEXT, "width": 48, "heads": 6},
        },
        _OPENAI,
    ),
    "vit-quickgelu-64": (
        {
            "embed_dim": 32,
            "quick_gelu": True,
            "vision_cfg": {
                "image_size": 32,
                "layers": 2,
                "width": 64,
                "patch_size": 8,
                "head_width": 16,
            },
            "text_cfg": {**_TEXT, "width": 32},
        },
        _OPENAI,
    ),
    "vit-quickgelu-96": (
        {
            "embed_dim": 48,
            "quick_gelu": True,
            "vision_cfg": {
                "image_size": 48,
                "layers": 3,
                "width": 96,
                "patch_size": 16,
                "head_width": 32,
            },
            "text_cfg": {**_TEXT, "width": 48, "heads": 6},
        },
        _OPENAI,
    ),
    # Final LayerNorm after pooling, a tanh GELU, a narrower MLP, and a
    # squashing bilinear resize with SigLIP's mean and std.
    "vit-variants": (
        {
            "embed_dim": 32,
            "vision_cfg": {
                "image_size": 40,
                "layers": 2,
                "width": 64,
                "patch_size": 8,
                "head_width": 16,
                "mlp_ratio": 2.0,
                "final_ln_after_pool": True,
                "act_kwargs": {"approximate": "tanh"},
            },
            "text_cfg": {**_TEXT, "width": 32, "final_ln_after_pool": True},
        },
        {
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
            "interpolation": "bilinear",
            "resize_mode": "squash",
        },
    ),
    # open_clip's CustomTextCLIP (text weights under "text.") with a causal tower.
    "vit-custom-text": (
        {
            "embed_dim": 32,
            "custom_text": True,
            "vision_cfg": {
                "image_size": 32,
                "layers": 2,
                "width": 64,
                "patch_size": 8,
                "head_width": 16,
            },
            "text_cfg": {**_TEXT, "width": 32},
        },
        _OPENAI,
    ),
    # MobileCLIP 2's text tower (bidirectional) with a plain ViT image tower.
    "mobileclip-text": (
        {
            "embed_dim": 32,
            "custom_text": True,
            "vision_cfg": {
                "image_size": 32,
                "layers": 2,
                "width": 64,
                "patch_size": 8,
                "head_width": 16,
            },
            "text_cfg": {**_TEXT, "width": 32, "no_causal_mask": True},
        },
        {"mean": [0.0] * 3, "std": [1.0] * 3, "interpolation": "bilinear"},
    ),
}
_SIGLIP_TEXT = {
    "context_length": 64,
    "width": 48,
    "heads": 4,
    "layers": 2,
    "no_causal_mask": True,
    "proj_bias": True,
    "pool_type": "last",
    "norm_kwargs": {"eps": 1e-6},
    "tokenizer_kwargs": {"clean": "canonicalize"},
}
_SIGLIP_PRE = {
    "mean": [0.5] * 3,
    "std": [0.5] * 3,
    "interpolation": "bicubic",
    "resize_mode": "squash",
}
# SigLIP ports: timm towers at their real names, shrunk in width and depth
# (heads and activation are the named model's).
SIGLIP_CONFIGS = {
    # v1: exact GELU in both towers.
    "siglip-v1": ("vit_base_patch16_siglip_224", {}, _SIGLIP_PRE),
    # v2: a tanh GELU in the text tower; this timm tower uses one too.
    "siglip-v2": (
        "vit_base_patch32_siglip_256",
        {"act_kwargs": {"approximate": "tanh"}},
        _SIGLIP_PRE,
    ),
}
SIGLIP_WIDTH = 48  # 12 heads of 4, as ViT-B has 12


def _siglip_cfg(timm_name, text, tokenizer_dir, vocab_size, image_size):
    return {
        "embed_dim": SIGLIP_WIDTH,
        "init_logit_bias": -10,
        "custom_text": True,
        "vision_cfg": {
            "image_size": image_size,
            "timm_model_name": timm_name,
            "timm_model_pretrained": False,
            "timm_pool": "map",
            "timm_proj": "none",
        },
        "text_cfg": {
            **_SIGLIP_TEXT,
            **text,
            "vocab_size": vocab_size,
            "hf_tokenizer_name": str(tokenizer_dir),
        },
    }


def shrunk_timm(open_clip):
    """timm's create_model, making its ViTs SIGLIP_WIDTH wide and 2 deep."""
    timm = sys.modules["timm"]
    create = timm.create_model

    def create_small(name, *args, **kwargs):
        return create(name, *args, embed_dim=SIGLIP_WIDTH, depth=2, **kwargs)

    return timm, create, create_small


def _save(open_clip, model, model_cfg, preprocess, folder, tokenizer=None):
    """Write ``model`` as open_clip's ``save_for_hf`` does: its config writer,
    the state dict as ``open_clip_model.safetensors``, and the tokenizer."""
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    model.visual.image_mean = preprocess.get("mean", model.visual.image_mean)
    model.visual.image_std = preprocess.get("std", model.visual.image_std)
    model.visual.preprocess_cfg = dict(preprocess)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    save_config_for_hf(model, folder / "open_clip_config.json", model_config=model_cfg)


def write_checkpoints(root, tokenizer_source):
    """``{name: folder}`` of tiny open_clip checkpoints, and open_clip's own
    model, transform and tokenizer of each, read back from the folder."""
    open_clip = open_clip_module()
    bpe = Path(open_clip.tokenizer.default_bpe())
    torch.manual_seed(0)
    made = {}
    for name, (model_cfg, preprocess) in CONFIGS.items():
        model = _create(open_clip, model_cfg)
        _save(open_clip, model, model_cfg, preprocess, root / name)
        shutil.copy(bpe, root / name / bpe.name)  # the CLIP BPE vocabulary
        made[name] = root / name
    timm, create, create_small = shrunk_timm(open_clip)
    timm.create_model = create_small
    try:
        for name, (timm_name, text, preprocess) in SIGLIP_CONFIGS.items():
            tokenizer = open_clip.tokenizer.HFTokenizer(
                str(tokenizer_source), context_length=64, clean="canonicalize"
            )
            size = int(timm_name.rsplit("_", 1)[1])
            model_cfg = _siglip_cfg(
                timm_name, text, tokenizer_source, len(tokenizer.tokenizer), size
            )
            model = _create(open_clip, model_cfg)
            _save(open_clip, model, model_cfg, preprocess, root / name, tokenizer)
            made[name] = root / name
        return {name: _read_back(open_clip, folder) for name, folder in made.items()}
    finally:
        timm.create_model = create


def _create(open_clip, model_cfg):
    """open_clip's own model of a config, its weights perturbed (so that no
    parameter keeps a constant initial value, LayerNorms included)."""
    from open_clip.factory import _MODEL_CONFIGS

    _MODEL_CONFIGS["sklearn-clip-test"] = json.loads(json.dumps(model_cfg))
    try:
        model = open_clip.create_model("sklearn-clip-test", pretrained=None)
    finally:
        del _MODEL_CONFIGS["sklearn-clip-test"]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return model.eval()


def _read_back(open_clip, folder):
    """open_clip's model, image transform and tokenizer, from the folder."""
    source = f"local-dir:{folder}"
    model, _, transform = open_clip.create_model_and_transforms(source)
    tokenizer = open_clip.get_tokenizer(source)
    return {
        "path": folder,
        "model": model.eval(),
        "transform": transform,
        "tokenizer": tokenizer,
    }
