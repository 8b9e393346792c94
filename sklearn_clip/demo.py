"""The offline main job: train a small CLIP on generated pairs, then zero-shot.

CLIP's idea end to end, with nothing downloaded: a model starts from random
weights, learns from (image, caption) pairs of coloured shapes, and is then
asked questions it was never trained to answer as a classifier, defined only by
prompts: which colour? which shape? which size? It is also asked to name
colour-shape combinations that never appeared in training, which it can only do
by composing what the words mean.
"""

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sklearn_clip import CLIPContrastiveFinetuner, CLIPZeroShotClassifier
from sklearn_clip.datasets import COLORS, SHAPES, SIZES, make_shapes
from sklearn_clip.toy import make_tiny_clip

# Colour-shape pairs kept out of training: one per colour and one per shape.
HELD_OUT = (
    ("red", "triangle"),
    ("green", "cross"),
    ("blue", "circle"),
    ("yellow", "diamond"),
    ("purple", "square"),
    ("orange", "circle"),
)

# The model and training set-up, chosen to learn the task in about a minute on
# two CPU cores.
# 32-pixel images in 8-pixel patches: a quarter of the compute of 64 pixels,
# and large batches give each step enough negatives to separate shapes.
IMAGE_SIZE = 32
MODEL_OPTIONS = {
    "image_size": IMAGE_SIZE,
    "patch_size": 8,
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 4,
    "context_length": 24,
}
TRAINING_OPTIONS = {
    "learning_rate": 2e-3,
    "weight_decay": 0.05,
    "batch_size": 128,
    "max_epochs": 30,
    "validation_fraction": 0.1,
    # The same training on every machine: float32, whatever bfloat16 units
    # the CPU has or which GPU runs it, so the docs' model is one model.
    "dtype": "float32",
}


def _tasks(n_test, random_state):
    """The zero-shot tasks: (name, images, true labels, labels, templates)."""
    test = make_shapes(
        n_test,
        image_size=IMAGE_SIZE,
        holdout_combinations=HELD_OUT,
        random_state=random_state + 1,
    )
    combos = make_shapes(
        n_test // 2,
        image_size=IMAGE_SIZE,
        only_combinations=HELD_OUT,
        random_state=random_state + 2,
    )
    per_shape = tuple(f"a {{}} {shape}" for shape in SHAPES)
    per_color = tuple(f"a {color} {{}}" for color in COLORS)
    all_pairs = [f"{c} {s}" for c in COLORS for s in SHAPES]
    return [
        (
            "colour",
            test.images,
            test.color,
            list(COLORS),
            ("something {}",) + per_shape,
        ),
        ("shape", test.images, test.shape, list(SHAPES), ("a {}",) + per_color),
        ("size", test.images, test.size, list(SIZES), per_shape),
        (
            "unseen colour-shape pairs",
            combos.images,
            np.char.add(
                np.char.add(combos.color.astype(str), " "), combos.shape.astype(str)
            ),
            all_pairs,
            ("a {}", "a picture of a {}"),
        ),
    ]


def _train(init_dir, n_train, max_epochs, random_state, *, progress, verbose=0):
    """Fit the demo's fine-tuner from random weights; ``(tuner, training set)``."""
    train = make_shapes(
        n_train,
        image_size=IMAGE_SIZE,
        holdout_combinations=HELD_OUT,
        random_state=random_state,
    )
    init = make_tiny_clip(init_dir, random_state=random_state, **MODEL_OPTIONS)
    options = {**TRAINING_OPTIONS, "random_state": random_state}
    if max_epochs is not None:
        options["max_epochs"] = max_epochs
    tuner = CLIPContrastiveFinetuner(
        model=init, progress=progress, verbose=verbose, **options
    )
    return tuner.fit(train.images, train.captions), train


def trained_model(directory=None, *, n_train=8000, max_epochs=None, random_state=0):
    """A small CLIP trained by the demo on generated shapes, cached on disk.

    The first call trains it (a few minutes on two CPU cores, with one line
    per epoch on standard error) and writes it with ``save_pretrained``; later
    calls with the same arguments return the saved directory at once.
    Examples and notebooks use it where a model that has learned something
    makes the point (accuracy, calibration, few-shot gains); it knows only the
    colours, shapes and sizes of
    :func:`~sklearn_clip.datasets.make_shapes` at ``image_size=32``.

    Parameters
    ----------
    directory : str or pathlib.Path, default=None
        Where the trained models are kept; None uses
        ``$SKLEARN_CLIP_DATA`` or ``~/.cache/sklearn-clip``.
    n_train : int, default=8000
        Generated training pairs.
    max_epochs : int, default=None
        Training epochs; None uses the demo's tuned value.
    random_state : int, default=0
        Seeds the data and the training.

    Returns
    -------
    pathlib.Path
        A directory that ``model=`` and :func:`~sklearn_clip.load_model` accept.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn_clip import CLIPZeroShotClassifier
    >>> from sklearn_clip.demo import trained_model
    >>> path = trained_model(tempfile.mkdtemp(), n_train=128, max_epochs=1)
    >>> clf = CLIPZeroShotClassifier(path, candidate_labels=["red", "blue"]).fit()
    >>> clf.classes_.tolist()
    ['blue', 'red']
    """
    root = directory or os.environ.get("SKLEARN_CLIP_DATA") or "~/.cache/sklearn-clip"
    epochs = TRAINING_OPTIONS["max_epochs"] if max_epochs is None else max_epochs
    name = f"demo-model-n{n_train}-e{epochs}-s{random_state}"
    target = Path(root).expanduser() / name
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Train into a temporary sibling and rename: a crash or a concurrent
    # caller never leaves a half-written model under the final name.
    start = time.perf_counter()
    print(
        f"Training the demo model ({n_train} pairs, {epochs} epochs; "
        f"done once, then read from {target})",
        file=sys.stderr,
        flush=True,
    )
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        # One line per epoch, on standard error: a long first call shows that
        # it is moving, and pages that capture printed output stay clean.
        with contextlib.redirect_stdout(sys.stderr):
            tuner, _ = _train(
                Path(tmp) / "init",
                n_train,
                max_epochs,
                random_state,
                progress=False,
                verbose=1,
            )
        tuner.save_pretrained(Path(tmp) / "model")
        try:
            os.replace(Path(tmp) / "model", target)
        except OSError:
            if not (target / "config.json").exists():
                raise
    seconds = time.perf_counter() - start
    print(f"Demo model trained in {seconds:.0f} s", file=sys.stderr, flush=True)
    return target


def run_demo(
    output_dir="sklearn-clip-demo",
    *,
    n_train=8000,
    n_test=600,
    max_epochs=None,
    random_state=0,
    verbose=True,
):
    """Train a small CLIP from scratch on generated shapes and evaluate zero-shot.

    Parameters
    ----------
    output_dir : str or pathlib.Path, default="sklearn-clip-demo"
        Where the plots, ``results.csv`` and the trained model (in
        ``save_pretrained`` format, under ``model/``) are written.
    n_train, n_test : int, default=8000, 600
        Generated training pairs and held-out test images.
    max_epochs : int, default=None
        Training epochs; None uses the demo's tuned value.
    random_state : int, default=0
        Seeds the data and the training.
    verbose : bool, default=True
        Print progress and the results table.

    Returns
    -------
    pandas.DataFrame
        One row per zero-shot task: accuracy, chance level, and their ratio.

    Examples
    --------
    A short run; the default one trains for about a minute and learns the task.

    >>> import tempfile
    >>> from sklearn_clip.demo import run_demo
    >>> results = run_demo(
    ...     tempfile.mkdtemp(), n_train=320, n_test=60, max_epochs=1, verbose=False
    ... )
    >>> results.columns.tolist()
    ['task', 'classes', 'accuracy', 'chance', 'x chance']
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    say = print if verbose else (lambda *args, **kwargs: None)
    start = time.perf_counter()

    say("Training a small CLIP from random weights ...")
    tuner, train = _train(
        output_dir / "init", n_train, max_epochs, random_state, progress=verbose
    )
    say(
        f"Trained on {n_train} generated pairs such as {train.captions[0]!r}, with "
        f"{len(HELD_OUT)} colour-shape pairs held out."
    )
    tuner.save_pretrained(output_dir / "model")
    say(
        f"Trained in {time.perf_counter() - start:.0f} s; model saved to "
        f"{output_dir / 'model'}"
    )

    rows, confusion = [], None
    for name, images, truth, labels, templates in _tasks(n_test, random_state):
        classifier = CLIPZeroShotClassifier(
            model=tuner.model_, candidate_labels=labels, templates=templates
        ).fit(None)
        predicted = classifier.predict(images)
        accuracy = float(np.mean(predicted == np.asarray(truth, dtype=object)))
        chance = 1 / len(labels)
        rows.append(
            {
                "task": name,
                "classes": len(labels),
                "accuracy": accuracy,
                "chance": chance,
                "x chance": accuracy / chance,
            }
        )
        if name == "colour":
            confusion = (truth, predicted, labels)
    results = pd.DataFrame(rows)
    results.to_csv(output_dir / "results.csv", index=False)
    say("\nZero-shot accuracy on held-out images, from prompts alone:")
    say(results.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    _plots(output_dir, tuner, confusion, train, say)
    say(
        f"\nDone in {time.perf_counter() - start:.0f} s. Plots and results are in "
        f"{output_dir}/"
    )
    return results


def _plots(output_dir, tuner, confusion, train, say):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.metrics import ConfusionMatrixDisplay

    tuner.plot_history().figure.savefig(output_dir / "history.png", dpi=120)
    truth, predicted, labels = confusion
    display = ConfusionMatrixDisplay.from_predictions(
        np.asarray(truth, dtype=object), predicted, labels=labels, colorbar=False
    )
    display.ax_.set_title("Zero-shot colour on held-out images")
    display.figure_.savefig(output_dir / "confusion_colour.png", dpi=120)

    sample = slice(0, 300)
    image_emb = tuner.transform(train.images[sample], modality="image")
    texts = [f"a {c} {s}" for c in COLORS for s in SHAPES]
    text_emb = tuner.transform(texts, modality="text")
    # CLIP keeps images and texts in two separate cones (the "modality gap");
    # centring each modality lets the map show how they line up, not the gap.
    centred = np.vstack([image_emb - image_emb.mean(0), text_emb - text_emb.mean(0)])
    points = PCA(n_components=2).fit_transform(centred)
    figure, ax = plt.subplots(figsize=(7, 6))
    colours = [np.array(COLORS[c]) / 255 for c in train.color[sample]]
    ax.scatter(
        points[:300, 0], points[:300, 1], c=colours, s=12, alpha=0.6, label="images"
    )
    ax.scatter(
        points[300:, 0], points[300:, 1], marker="x", c="k", s=25, label="captions"
    )
    for (x, y), text in zip(points[300:], texts):
        ax.annotate(text.removeprefix("a "), (x, y), fontsize=6)
    ax.set_title("Images and captions in the shared space (PCA, each centred)")
    ax.legend()
    figure.savefig(output_dir / "embedding_map.png", dpi=120)
    plt.close("all")
    say("Wrote history.png, confusion_colour.png and embedding_map.png")
