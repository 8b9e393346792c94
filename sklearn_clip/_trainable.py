"""What a fine-tuning run trains, and how AdamW treats it.

``train_parts`` picks the parameters: both towers, one tower with the other
locked (LiT-style), or the projections only; LoRA adapters (peft) can stand in
for full weights in the towers it trains. The temperature always trains.
"""

import copy
import warnings

# Parameter-name prefixes of each part of a CLIP or SigLIP model.
_IMAGE_TOWER = ("vision_model.", "visual_projection.")
_TEXT_TOWER = ("text_model.", "text_projection.")
_PROJECTIONS = (
    "visual_projection.",
    "text_projection.",
    "vision_model.head.",
    "text_model.head.",
)
_TEMPERATURE = ("logit_scale", "logit_bias", "temperature")
_LORA_LAYERS = "(q_proj|k_proj|v_proj|out_proj|fc1|fc2)"


def _trains(name, train_parts):
    """Whether the parameter ``name`` trains under ``train_parts``."""
    if name in _TEMPERATURE:
        return True  # the temperature always adapts to the new pairs
    if train_parts == "all":
        return True
    if train_parts == "projections":
        return name.startswith(_PROJECTIONS)
    locked = _IMAGE_TOWER if train_parts == "lock_image" else _TEXT_TOWER
    return not name.startswith(locked)


def _lora_config(lora, train_parts):
    try:
        from peft import LoraConfig
    except ImportError as exc:
        raise ImportError(
            "lora= needs the optional dependency peft; install it with "
            "pip install sklearn-clip[lora]"
        ) from exc
    if train_parts == "projections":
        raise ValueError(
            "lora adapts the attention and MLP layers of the towers, but "
            "train_parts='projections' trains only the projections; use "
            "train_parts='all', 'lock_image' or 'lock_text' with lora, or lora=None."
        )
    towers = {
        "all": "(text_model|vision_model)",
        "lock_image": "text_model",
        "lock_text": "vision_model",
    }[train_parts]
    options = {"r": lora} if isinstance(lora, int) else dict(lora)
    options.setdefault("r", 8)
    # alpha = r keeps the adapters' scale at 1 whatever the rank.
    options.setdefault("lora_alpha", options["r"])
    options.setdefault("lora_dropout", 0.0)
    options.setdefault("target_modules", rf".*{towers}\..*\.{_LORA_LAYERS}")
    return LoraConfig(**options)


def build_trainable(base_model, config):
    """A float32 copy of ``base_model`` with only the chosen parameters trainable.

    Returns ``(model, peft_model)``; ``peft_model`` is None without LoRA, and
    otherwise wraps ``model``, whose layers then carry the adapters.
    """
    # float32 master weights: AdamW's small updates vanish in bfloat16.
    model = copy.deepcopy(base_model).float()
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(_trains(name, config.train_parts))
    if config.lora is None:
        return model, None
    lora_config = _lora_config(config.lora, config.train_parts)  # imports peft
    from peft import get_peft_model

    with warnings.catch_warnings():
        # peft asks transformers a deprecated question; not the user's concern.
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
        peft_model = get_peft_model(model, lora_config)
    model = peft_model.get_base_model()
    for name in _TEMPERATURE:
        if hasattr(model, name):
            getattr(model, name).requires_grad_(True)
    return model, peft_model


def parameter_groups(model, weight_decay):
    """AdamW groups: decay on matrices, none on biases, norms and temperature.

    Decaying a gain, an offset or the temperature towards zero only pulls the
    model away from its working point; matrices are what decay regularises.
    """
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
