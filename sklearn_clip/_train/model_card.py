"""The model card a fine-tuned model is saved with, as transformers writes one.

``save_pretrained`` writes it as ``README.md`` beside the weights, so that a
model shared on a hub or a file server says where it came from, what it was
trained on and with which settings, how it scored, and which libraries made
it.
"""

import math
from importlib.metadata import PackageNotFoundError, version

# Parameters that say where things went on the training machine, not how
# the model was trained.
_LOCAL_PARAMETERS = {"checkpoint_dir", "pairs_dir", "progress", "verbose", "model"}
_LIBRARIES = ("sklearn-clip", "torch", "transformers", "scikit-learn", "peft")


def model_card(tuner):
    """``README.md`` text for the fitted fine-tuner ``tuner``."""
    base = tuner.model if isinstance(tuner.model, str) else "weights given in memory"
    lines = [
        "---",
        "library_name: transformers",
        f"tags: [sklearn-clip, {tuner.model_.family}, contrastive-fine-tuning]",
        *([f"base_model: {tuner.model}"] if isinstance(tuner.model, str) else []),
        "---",
        "",
        f"# {tuner.model_.family} fine-tuned with sklearn-clip",
        "",
        f"Fine-tuned from `{base}`"
        + (f" (revision `{tuner.revision}`)" if tuner.revision else "")
        + " with `sklearn_clip.CLIPContrastiveFinetuner`, on image-caption pairs.",
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
        f"| `{name}` | `{value!r}` |"
        for name, value in sorted(params.items())
        if name not in _LOCAL_PARAMETERS
    ]
    rows.append(f"| training precision | `{tuner.training_dtype_}` |")
    return rows


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
