"""Reading a checkpoint's weights into a PyTorch model, refusing bad ones.

Everything that can be refused before the weights are read (pickle weights,
remote code, an unsupported family, no image-processor config) is, by
:mod:`sklearn_clip._models.loading`; what only the weights can show (damaged
files, missing or misshapen tensors, values that are not finite) is refused
here, naming the folder, the file and the tensors.
"""

from pathlib import Path

from sklearn_clip._backends.torch.open_clip import (
    read_open_clip_checkpoint,
    run_bidirectional,
)
from sklearn_clip._models.loading import (
    check_family,
    check_loadable,
    quiet_transformers,
    read_config,
    read_image_processor,
)
from sklearn_clip._models.open_clip import is_open_clip


def read_checkpoint(directory, device, dtype):
    """``(model, tokenizer, image processor)`` from a saved directory.

    ``dtype`` None keeps the precision the weights are stored in.

    Everything that can be refused (pickle weights, remote code, an
    unsupported family, no image-processor config) is, before the weights
    are read; after, weights that are damaged, missing or not finite are
    refused too (:func:`check_weights`), never run.
    """
    from transformers import AutoTokenizer

    if is_open_clip(directory):
        # Converted as it loads: sklearn_clip._backends.torch.open_clip.
        with quiet_transformers():
            model, tokenizer, image_processor = read_open_clip_checkpoint(directory)
        check_weights(directory, model, {})
        return model.to(device=device, dtype=dtype), tokenizer, image_processor
    check_loadable(directory)
    check_family(directory, read_config(directory))
    # Safetensors only and never remote code: a checkpoint cannot run anything.
    # An auto_map in a known model type's config is ignored: the built-in class
    # loads it.
    options = {"local_files_only": True, "trust_remote_code": False}
    with quiet_transformers():
        image_processor = read_image_processor(directory)
        tokenizer = AutoTokenizer.from_pretrained(str(directory), **options)
        model = read_weights(directory, options)
    model = model.to(device=device, dtype=dtype)
    return model, tokenizer, image_processor


def weight_files(directory):
    """The safetensors files of a checkpoint, by name (for messages)."""
    return ", ".join(sorted(p.name for p in Path(directory).glob("*.safetensors")))


def read_weights(directory, options):
    """The model of a checkpoint, with every tensor read from its files.

    A damaged (truncated, overwritten) weights file raises an ``OSError``
    naming it, instead of the safetensors library's bare error.
    """
    from safetensors import SafetensorError
    from transformers import AutoModel

    try:
        model, info = AutoModel.from_pretrained(
            str(directory), use_safetensors=True, output_loading_info=True, **options
        )
    except (SafetensorError, EOFError) as exc:
        raise OSError(
            f"the weights file of {str(directory)!r} ({weight_files(directory)}) "
            f"is damaged and cannot be read ({type(exc).__name__}: {exc}); it may "
            "have been truncated by an interrupted copy or download. Copy or "
            "download the checkpoint again, or save it again with save_pretrained."
        ) from None
    check_weights(directory, model, info)
    return run_bidirectional(model)


def _listed(names, limit=5):
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_weights(directory, model, info):
    """Refuse weights that would make every embedding wrong.

    transformers builds any tensor a checkpoint lacks (or holds with another
    shape) at random and only logs it; NaN or infinite weights make every
    output NaN. Both are refused here, naming the file and the tensors.
    """
    files = weight_files(directory)
    missing = set(info.get("missing_keys") or ())
    missing |= {str(entry[0]) for entry in info.get("mismatched_keys") or ()}
    if missing:
        raise OSError(
            f"the weights of {str(directory)!r} ({files}) lack {len(missing)} "
            f"tensor(s) the model needs, or hold them with another shape: "
            f"{_listed(missing)}. They would be filled with random values, so "
            "the checkpoint is refused: it is incomplete or belongs to another "
            "architecture. Copy or save the whole checkpoint again."
        )
    broken = [
        name
        for name, tensor in model.state_dict().items()
        if tensor.is_floating_point() and not bool(tensor.isfinite().all())
    ]
    if broken:
        raise ValueError(
            f"the weights of {str(directory)!r} ({files}) hold NaN or infinite "
            f"values in {len(broken)} tensor(s): {_listed(broken)}. Every "
            "embedding would be NaN; use a checkpoint saved before training "
            "diverged, or save the model again from a good copy."
        )
