"""The model card a fine-tuned model is saved with, as transformers writes one.

``save_pretrained`` writes it as ``README.md`` beside the weights, so that a
model shared on a hub or a file server says where it came from, what it was
trained on and with which settings, how it scored, and which libraries made
it.
"""

import math
import os
from importlib.metadata import PackageNotFoundError, version

from sklearn_clip._models.loading import is_local

# Parameters that say where things went on the training machine, not how
# the model was trained.
_LOCAL_PARAMETERS = {"checkpoint_dir", "pairs_dir", "progress", "verbose", "model"}
_LIBRARIES = ("sklearn-clip", "torch", "transformers", "scikit-learn", "peft")


def model_card(tuner):
    """``README.md`` text for the fitted fine-tuner ``tuner``.

    The metadata is written by huggingface_hub's card classes (a YAML
    serializer), so no value (a folder name with ": " or a newline) can break
    it or add keys. ``base_model`` names a hub id only: a local folder's path
    says nothing to a reader elsewhere, and would publish the training
    machine's layout.
    """
    from huggingface_hub import ModelCard, ModelCardData

    base = hub_id(_source(tuner.model))
    data = ModelCardData(
        base_model=base,
        library_name="transformers",
        pipeline_tag="zero-shot-image-classification",
        tags=["sklearn-clip", tuner.model_.family, "contrastive-fine-tuning"],
    )
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_body(tuner, base)}"))


def hub_id(source):
    """``source`` when it names a model on the hub, else None.

    A local folder (one that exists, or any path that is not a valid repo
    id, such as an absolute path) is not a hub id.

    Examples
    --------
    >>> from sklearn_clip._train.model_card import hub_id
    >>> hub_id("openai/clip-vit-base-patch32")
    'openai/clip-vit-base-patch32'
    >>> hub_id("/home/me/models/clip") is None
    True
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(source, str) or is_local(source) or os.path.exists(source):
        return None
    try:
        validate_repo_id(source)
    except HFValidationError:
        return None
    return source


def _source(model):
    # A handle says where its weights came from (None: only in memory).
    return model if isinstance(model, str | os.PathLike) else model.source


def _body(tuner, base):
    if base is not None:
        origin = f"`{base}`" + (
            f" (revision `{tuner.revision}`)" if tuner.revision else ""
        )
    elif _source(tuner.model) is not None:
        origin = "a local checkpoint"
    else:
        origin = "weights given in memory"
    lines = [
        f"# {tuner.model_.family} fine-tuned with sklearn-clip",
        "",
        f"Fine-tuned from {origin} with `sklearn_clip.CLIPContrastiveFinetuner`, "
        "on image-caption pairs.",
        "",
        "## Training data",
        "",
        *_data_lines(tuner),
        "",
        "## Settings",
        "",
        "| parameter | value |",
        "|---|---|",
        *_setting_rows(tuner),
        "",
        "## Results",
        "",
        *_result_lines(tuner),
        "",
        "## Libraries",
        "",
        *(f"- {name} {v}" for name, v in _versions()),
        "",
        "## Use",
        "",
        "```python",
        "from sklearn_clip import load_model",
        "",
        'model = load_model("path/to/this/folder")',
        "```",
        "",
    ]
    return "\n".join(lines)


def _data_lines(tuner):
    sizes = getattr(tuner, "_pair_counts", {})
    return [
        f"- {sizes.get('train', '?')} training pairs, "
        f"{sizes.get('validation', 0)} validation pairs",
        f"- {len(getattr(tuner, 'input_errors_', []))} pairs left out "
        "(unreadable images or missing captions)",
    ]


def _setting_rows(tuner):
    params = tuner.get_params(deep=False)
    rows = [
        f"| `{name}` | `{_cell(value)}` |"
        for name, value in sorted(params.items())
        if name not in _LOCAL_PARAMETERS
    ]
    rows.append(f"| training precision | `{tuner.training_dtype_}` |")
    return rows


def _cell(value):
    # repr escapes newlines; an unescaped "|" would end the table's cell.
    return repr(value).replace("|", "\\|")


def _result_lines(tuner):
    last = tuner.history_[-1]
    stopped = " (interrupted)" if tuner.interrupted_ else ""
    lines = [
        f"- epochs trained: {tuner.n_iter_}{stopped}",
        f"- final training loss: {last['train_loss']:.4f}",
    ]
    recalls = [r for h in tuner.history_ if not math.isnan(r := h["val_recall_at_1"])]
    if recalls:
        lines += [
            f"- validation recall@1: last {last['val_recall_at_1']:.3f}, "
            f"best {max(recalls):.3f}",
            f"- final validation loss: {last['val_loss']:.4f}",
        ]
    return lines


def _versions():
    for name in _LIBRARIES:
        try:
            yield name, version(name)
        except PackageNotFoundError:
            continue
