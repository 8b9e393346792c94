"""What a fine-tuning run trains, and how AdamW treats it.

``train_parts`` picks the parameters: both towers, one tower with the other
locked (LiT-style), or the projections only; LoRA adapters (peft) can stand in
for full weights in the towers it trains. The temperature always trains.
"""

import copy
import warnings

from sklearn_clip._models.families import family_of


def _trains(name, train_parts, family):
    """Whether the parameter ``name`` trains under ``train_parts``."""
    if name in family.temperature_names:
        return True  # the temperature always adapts to the new pairs
    if train_parts == "all":
        return True
    if train_parts == "projections":
        return name.startswith(family.projections)
    locked = family.image_tower if train_parts == "lock_image" else family.text_tower
    return not name.startswith(locked)


def _lora_config(lora, train_parts, family):
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
    options = {"r": lora} if isinstance(lora, int) else dict(lora)
    options.setdefault("r", 8)
    # alpha = r keeps the adapters' scale at 1 whatever the rank.
    options.setdefault("lora_alpha", options["r"])
    options.setdefault("lora_dropout", 0.0)
    if "target_modules" not in options:
        options["target_modules"] = _lora_targets(train_parts, family)
    return LoraConfig(**options)


def _lora_targets(train_parts, family):
    """The regex of the layers LoRA adapts in the towers ``train_parts`` trains."""
    if family.lora_layers is None:
        raise ValueError(
            f"lora has no default layers to adapt in a {family.model_type!r} "
            "model; name them in lora={'target_modules': ...}, or use lora=None."
        )
    # Each tower's first prefix names its encoder module.
    image, text = (
        tower[0].rstrip(".") for tower in (family.image_tower, family.text_tower)
    )
    towers = {
        "all": f"({text}|{image})",
        "lock_image": text,
        "lock_text": image,
    }[train_parts]
    return rf".*{towers}\..*\.{family.lora_layers}"


def build_trainable(base_model, config):
    """A float32 copy of ``base_model`` with only the chosen parameters trainable.

    Returns ``(model, peft_model)``; ``peft_model`` is None without LoRA, and
    otherwise wraps ``model``, whose layers then carry the adapters.
    """
    # float32 master weights: AdamW's small updates vanish in bfloat16.
    model = copy.deepcopy(base_model).float()
    family = family_of(model)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(_trains(name, config.train_parts, family))
    if config.lora is None:
        return model, None
    lora_config = _lora_config(config.lora, config.train_parts, family)  # imports peft
    from peft import get_peft_model

    with warnings.catch_warnings():
        # peft asks transformers a deprecated question; not the user's concern.
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
        peft_model = get_peft_model(model, lora_config)
    model = peft_model.get_base_model()
    for name in family.temperature_names:
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
