"""What each supported model family is, in one table.

Every decision that depends on the model family (how its pairs are scored,
where its temperature lives, how its text is padded, what fine-tuning trains,
which forward shortcuts it takes) is a lookup in :data:`FAMILY_TABLE`, by the
transformers model type: nothing elsewhere in the package names a family or
probes a model for an attribute. Adding a family is adding a row; every row
is checked against the family's real (tiny) model in
``tests/models/test_families_table.py``.

This module imports nothing from the rest of the package.
"""

from dataclasses import dataclass

# transformers' zero-shot pipeline pads SigLIP-family text to this many tokens.
SIGLIP_TEXT_LENGTH = 64

# The attention and MLP layers of the ViT-style towers, which LoRA adapts.
_VIT_LAYERS = "(q_proj|k_proj|v_proj|out_proj|fc1|fc2)"
# Parameter-name prefixes of the parts of a CLIP-style model (a transformer
# tower per modality, and a linear projection of each into the shared space).
_CLIP_IMAGE = ("vision_model.", "visual_projection.")
_CLIP_TEXT = ("text_model.", "text_projection.")
_CLIP_PROJECTIONS = ("visual_projection.", "text_projection.")


@dataclass(frozen=True)
class Family:
    """The facts about one model family that the package decides by.

    Parameters
    ----------
    model_type : str
        The transformers model type (``config.model_type``).
    model_class : str
        The class ``AutoModel`` builds for it; the forward shortcuts are
        proven for that class only, not for subclasses.
    processor : str
        The transformers processor class that saves tokenizer and image
        processor together.
    sigmoid : bool
        Scored with a sigmoid of ``scale * cosine + bias`` per pair
        (SigLIP-style) rather than a softmax over the classes.
    temperature : str
        The name of the model's learned temperature parameter.
    log_temperature : bool
        True where that parameter holds ``log(scale)`` (CLIP's
        ``logit_scale``: cosines are multiplied by its exp, which fine-tuning
        clamps); False where it holds the temperature ``T`` itself (ALIGN:
        cosines are divided by it).
    bias : str or None
        The name of the learned logit bias parameter; None for families
        without one.
    pad_to_max_length : bool
        Text is padded to the full context: SigLIP pools the last position and
        was trained on sequences padded so; CLIP pools the end token, so the
        padding is free to vary.
    text_length : int or None
        The fixed text context, where the family's pipeline sets one; None
        reads it from the model's config and tokenizer.
    position_offset : bool
        The text tower counts positions from the padding id + 1 (XLM-R), so
        that many of its position embeddings hold no token.
    finetune : bool
        Contrastive fine-tuning is supported. BLIP's image-text embeddings
        were trained alongside matching and captioning heads, which a
        contrastive loss alone would leave behind.
    lora_layers : str or None
        Regex of the layer names LoRA adapts inside the towers; None where no
        LoRA target is proven for the family.
    image_tower, text_tower : tuple of str
        Parameter-name prefixes of each tower, projection included; the first
        names the tower's encoder module (where LoRA's layers are looked for).
    projections : tuple of str
        Parameter-name prefixes of what maps each tower into the shared space
        (``train_parts="projections"``).
    fast_paths : frozenset of str
        The shortcuts of :mod:`sklearn_clip._backends.torch.forward` proven for
        ``model_class``; empty where transformers' own forward runs.
    load_noise : tuple of str or None
        ``(logger, message fragment)`` of a warning transformers logs on every
        load of this family that says nothing about the checkpoint at hand.
    export : bool
        :func:`~sklearn_clip.export_model` can export it for ONNX Runtime and
        OpenVINO: fixed-size pixels that the package's own preprocessing
        makes (so it runs without PyTorch) and towers that PyTorch's ONNX
        exporter traces; each is checked against the PyTorch path in
        ``tests/backends/test_export.py``.
    """

    model_type: str
    model_class: str
    processor: str
    sigmoid: bool
    temperature: str
    log_temperature: bool
    bias: str | None
    pad_to_max_length: bool
    text_length: int | None
    position_offset: bool
    finetune: bool
    lora_layers: str | None
    image_tower: tuple[str, ...]
    text_tower: tuple[str, ...]
    projections: tuple[str, ...]
    fast_paths: frozenset[str]
    load_noise: tuple[str, str] | None
    export: bool

    @property
    def temperature_names(self):
        """The names of the temperature and the bias (where there is one)."""
        return tuple(n for n in (self.temperature, self.bias) if n is not None)

    @property
    def open_clip_layouts(self):
        """The layouts of open_clip checkpoints that load as this family."""
        return tuple(x for x in OPEN_CLIP_LAYOUTS if x.model_type == self.model_type)


def _clip_like(model_type, model_class, processor, **facts):
    """A row for a CLIP-style family: softmax over ``exp(logit_scale) * cosine``."""
    row = {
        "sigmoid": False,
        "temperature": "logit_scale",
        "log_temperature": True,
        "bias": None,
        "pad_to_max_length": False,
        "text_length": None,
        "position_offset": False,
        "finetune": True,
        "lora_layers": _VIT_LAYERS,
        "image_tower": _CLIP_IMAGE,
        "text_tower": _CLIP_TEXT,
        "projections": _CLIP_PROJECTIONS,
        "fast_paths": frozenset(),
        "load_noise": None,
        "export": True,
    }
    return Family(model_type, model_class, processor, **{**row, **facts})


def _siglip_like(model_type, model_class, processor, **facts):
    """A row for a SigLIP-style family: a sigmoid and a bias, attention-pooled."""
    return _clip_like(
        model_type,
        model_class,
        processor,
        sigmoid=True,
        bias="logit_bias",
        pad_to_max_length=True,
        text_length=SIGLIP_TEXT_LENGTH,
        # No projection matrices: each tower ends in its own pooling head.
        image_tower=("vision_model.",),
        text_tower=("text_model.",),
        projections=("vision_model.head.", "text_model.head."),
        **facts,
    )


# Which shortcuts of sklearn_clip._backends.torch.forward a family takes:
# "class_token" (the last image layer for the class token only), "prefix"
# (shared text prefixes run once; a causal text tower), "quick_gelu" (the fused
# activation). Each is proven against the class's own forward in
# tests/backends/test_forward.py.
_CLIP_FAST = frozenset({"class_token", "prefix", "quick_gelu"})

# One row per family, in the order error messages list them. These are the
# model types of transformers' zero-shot-image-classification mapping that run
# end to end here, each checked against transformers' own pipeline in
# tests/models/test_families.py; the others in that mapping (BLIP-2's retrieval head,
# CLIPSeg, ...) score image-text pairs in ways these estimators do not
# reproduce, and are refused at load.
FAMILY_TABLE = (
    _clip_like("clip", "CLIPModel", "CLIPProcessor", fast_paths=_CLIP_FAST),
    _clip_like("metaclip_2", "MetaClip2Model", "CLIPProcessor", fast_paths=_CLIP_FAST),
    _siglip_like("siglip", "SiglipModel", "SiglipProcessor"),
    # Patches of varying number and shape (NaFlex): no fixed-size export.
    _siglip_like("siglip2", "Siglip2Model", "Siglip2Processor", export=False),
    _clip_like(
        "align",
        "AlignModel",
        "AlignProcessor",
        temperature="temperature",
        log_temperature=False,
        # A BERT text tower and an EfficientNet image tower: no ViT layers.
        lora_layers=None,
        image_tower=("vision_model.",),
        projections=("text_projection.",),  # the CNN's channels are the embedding
        export=False,  # EfficientNet's own image processor runs: not without PyTorch
    ),
    _clip_like(
        "altclip",
        "AltCLIPModel",
        "AltCLIPProcessor",
        position_offset=True,
        fast_paths=frozenset({"quick_gelu"}),
    ),
    _clip_like(
        "chinese_clip",
        "ChineseCLIPModel",
        "ChineseCLIPProcessor",
        fast_paths=frozenset({"quick_gelu"}),
        export=False,  # its own image processor runs: not without PyTorch
    ),
    _clip_like(
        "blip",
        "BlipModel",
        "BlipProcessor",
        finetune=False,
        lora_layers=None,
        export=False,
        # BlipModel is the class transformers' own zero-shot pipeline loads.
        load_noise=(
            "transformers.models.blip.modeling_blip",
            "is going to be deprecated",
        ),
    ),
)
_BY_TYPE = {family.model_type: family for family in FAMILY_TABLE}


@dataclass(frozen=True)
class OpenClipLayout:
    """A layout of open_clip checkpoints that maps exactly onto a family's class.

    An open_clip checkpoint (``open_clip_config.json`` and
    ``open_clip_model.safetensors``) is converted as it loads, key for key,
    into the model of ``model_type``
    (:mod:`sklearn_clip._models.open_clip` reads the config,
    :mod:`sklearn_clip._backends.torch.open_clip` maps the weights); every
    other layout is refused with the list of these.

    Parameters
    ----------
    name : str
        The layout's short name, as messages and the docs give it.
    model_type : str
        The family row the checkpoint loads as.
    image_tower, text_tower : str
        What open_clip builds for each tower, as the docs describe it.
    bidirectional_text : bool
        The text tower attends both ways (open_clip's ``no_causal_mask``)
        where the family's class is causal: it runs through a registered
        non-causal attention function, over texts padded to the full context.
    """

    name: str
    model_type: str
    image_tower: str
    text_tower: str
    bidirectional_text: bool

    def describe(self):
        """One line: the two towers and the family they load as."""
        return f"{self.image_tower} + {self.text_tower} -> {self.model_type}"


# The open_clip layouts that load, as a second source of each family's rows.
OPEN_CLIP_LAYOUTS = (
    OpenClipLayout(
        "vit",
        "clip",
        "built-in ViT image tower (class-token pooling)",
        "built-in causal text transformer (CLIP BPE)",
        bidirectional_text=False,
    ),
    OpenClipLayout(
        "vit-bidirectional-text",
        "clip",
        "built-in ViT image tower (class-token pooling)",
        "MobileCLIP's bidirectional text transformer (no_causal_mask, CLIP BPE)",
        bidirectional_text=True,
    ),
    OpenClipLayout(
        "timm-siglip",
        "siglip",
        "timm SigLIP ViT image tower (vit_*_siglip_*, attention pooled)",
        "built-in SigLIP text transformer (its Hugging Face tokenizer)",
        bidirectional_text=False,
    ),
)

SUPPORTED_FAMILIES = tuple(_BY_TYPE)
# Scored with a sigmoid and a learned bias.
SIGMOID_FAMILIES = tuple(f.model_type for f in FAMILY_TABLE if f.sigmoid)
# Families with a learned contrastive temperature that fine-tuning trains.
FINETUNE_FAMILIES = tuple(f.model_type for f in FAMILY_TABLE if f.finetune)
# Families that export_model exports for ONNX Runtime and OpenVINO.
EXPORT_FAMILIES = tuple(f.model_type for f in FAMILY_TABLE if f.export)


def family_of(model_or_model_type):
    """The :class:`Family` row of a model or of a transformers model type.

    Parameters
    ----------
    model_or_model_type : str or transformers model
        A model type (``"clip"``, ...) or a model, whose
        ``config.model_type`` is looked up.

    Returns
    -------
    Family

    Raises
    ------
    ValueError
        For a model type not in the table; the message lists the supported
        ones.

    Examples
    --------
    >>> from sklearn_clip._models.families import family_of
    >>> family_of("siglip2").sigmoid
    True
    >>> family_of("clipseg")
    Traceback (most recent call last):
    ...
    ValueError: 'clipseg' is not a supported model family; sklearn-clip supports ...
    """
    model_type = model_or_model_type
    if not isinstance(model_type, str):
        model_type = model_or_model_type.config.model_type
    try:
        return _BY_TYPE[model_type]
    except KeyError:
        raise ValueError(
            f"{model_type!r} is not a supported model family; sklearn-clip supports "
            f"the CLIP-family model types {', '.join(SUPPORTED_FAMILIES)}."
        ) from None
