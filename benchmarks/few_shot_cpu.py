"""Accuracy against shots per class: zero-shot, a probe, Tip-Adapter, our heads.

Two settings, each with a model that has learned its world and a labelled pool
separate from the held-out images:

- ``shapes``: the docs' demo model (``sklearn_clip.demo.trained_model``) asked
  for the colour and shape of generated images, the 24 pairs it was trained on;
- ``digits``: scikit-learn's ``load_digits`` upscaled to 32 pixels, with a
  small CLIP from ``sklearn_clip.toy`` fine-tuned with
  ``CLIPContrastiveFinetuner`` on captions ("a photo of the number seven") of
  700 digits kept apart from the pool and the held-out images; and the same
  with a model tuned for 3 epochs only, whose prompts are weak and where a
  probe beats zero-shot.

For 1, 2, 4, 8 and 16 shots per class and 3 seeds, on the same held-out images:
zero-shot; ``LogisticRegressionCV`` on the same unit-length embeddings (the
default ``LogisticRegression`` at one shot, where folds cannot be made);
Tip-Adapter (``method="tip", prompt_weight=1``, its ``alpha`` and ``beta``
cross-validated); and ``CLIPFewShotClassifier`` with its defaults for
``method="linear"`` and ``method="tip"``. Then the fit time at 16 shots x 24
classes (embeddings read from the cache), and the figure.

Usage:
``python benchmarks/few_shot_cpu.py [--seeds 3] [--plot docs/images/few_shot.png]``
"""

import argparse
import statistics
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
from _common import CACHE, machine
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPEmbeddingTransformer,
    CLIPFewShotClassifier,
    CLIPZeroShotClassifier,
)
from sklearn_clip.datasets import make_shapes
from sklearn_clip.demo import HELD_OUT, IMAGE_SIZE, MODEL_OPTIONS, trained_model
from sklearn_clip.toy import make_tiny_clip

SHOTS = (1, 2, 4, 8, 16)
NUMBERS = "zero one two three four five six seven eight nine".split()
CONTENDERS = {
    "probe": "LogisticRegressionCV",
    "tip-adapter": {"method": "tip", "prompt_weight": 1.0},
    "ours linear": {"method": "linear"},
    "ours tip": {"method": "tip"},
}


def _pairs(data):
    return np.char.add(np.char.add(data.color.astype(str), " "), data.shape.astype(str))


def shapes_setting():
    """The demo's model and world: 24 colour-shape pairs."""
    pool = make_shapes(
        1500, image_size=IMAGE_SIZE, holdout_combinations=HELD_OUT, random_state=201
    )
    test = make_shapes(
        1200, image_size=IMAGE_SIZE, holdout_combinations=HELD_OUT, random_state=202
    )
    return {
        "model": trained_model(n_train=4000, max_epochs=20),
        "pool": (pool.images, _pairs(pool)),
        "test": (test.images, _pairs(test)),
        "options": {
            "candidate_labels": sorted(set(_pairs(pool))),
            "templates": ["a {}", "a picture of a {}"],
        },
    }


def _digits_model(images, numbers, epochs):
    """A tiny CLIP fine-tuned on captioned digits, trained once and kept."""
    target = CACHE / f"digits-clip-700-e{epochs}-s0"
    if not (target / "config.json").exists():
        init = make_tiny_clip(tempfile.mkdtemp(), random_state=0, **MODEL_OPTIONS)
        tuner = CLIPContrastiveFinetuner(
            init,
            learning_rate=2e-3,
            weight_decay=0.05,
            batch_size=64,
            max_epochs=epochs,
            dtype="float32",
            random_state=0,
        )
        tuner.fit(list(images), [f"a photo of the number {n}" for n in numbers])
        tuner.save_pretrained(target)
    return target


def digits_setting(epochs=15):
    """``load_digits`` at 32 pixels: 700 images tune the model (for
    ``epochs``), 400 form the labelled pool and the other 697 are held out."""
    digits = load_digits()
    images = np.kron(
        (digits.images * 255 / 16).astype(np.uint8), np.ones((4, 4), np.uint8)
    )
    labels = np.array(NUMBERS)[digits.target]
    order = np.random.default_rng(0).permutation(len(images))
    tune, pool, test = order[:700], order[700:1100], order[1100:]
    return {
        "model": _digits_model(images[tune], labels[tune], epochs),
        "pool": (images[pool], labels[pool]),
        "test": (images[test], labels[test]),
        "options": {
            "candidate_labels": NUMBERS,
            "templates": ["a photo of the number {}"],
        },
    }


def _draw(labels, shots, seed):
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == c), shots, replace=False)
            for c in np.unique(labels)
        ]
    )


def _probe(shots):
    if shots < 2:
        return LogisticRegression(max_iter=2000)
    return LogisticRegressionCV(cv=StratifiedKFold(min(5, shots)), max_iter=2000)


def run(setting, seeds, cache_dir):
    model, options = setting["model"], {**setting["options"], "cache_dir": cache_dir}
    (pool, pool_y), (test, test_y) = setting["pool"], setting["test"]
    zero = CLIPZeroShotClassifier(model, **options).fit().score(test, test_y)
    embed = CLIPEmbeddingTransformer(model, cache_dir=cache_dir).fit(pool)
    pool_emb, test_emb = embed.transform(pool), embed.transform(test)
    rows, fit_times = [], []
    for shots in SHOTS:
        for seed in range(seeds):
            chosen = _draw(pool_y, shots, seed)
            row = {"shots": shots, "seed": seed, "zero-shot": zero}
            with threadpool_limits(limits=1, user_api="blas"):
                probe = _probe(shots).fit(pool_emb[chosen], pool_y[chosen])
                row["probe"] = probe.score(test_emb, test_y)
            for name, params in CONTENDERS.items():
                if name == "probe":
                    continue
                clf = CLIPFewShotClassifier(
                    model, random_state=seed, **params, **options
                )
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # 1 shot: the fallback warning
                    clf.fit(pool[chosen], pool_y[chosen])
                if shots == 16 and name == "ours linear":
                    fit_times.append(time.perf_counter() - start)
                row[name] = clf.score(test, test_y)
            rows.append(row)
            print(row, flush=True)
    return rows, fit_times


def table(rows):
    """Markdown: mean over seeds (min-max) per shots and contender."""
    names = ["zero-shot", *CONTENDERS]
    lines = ["| shots | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for shots in SHOTS:
        cells = []
        for name in names:
            values = np.array([r[name] for r in rows if r["shots"] == shots])
            spread = (
                f" ({values.min():.3f}-{values.max():.3f})" if np.ptp(values) else ""
            )
            cells.append(f"{values.mean():.3f}{spread}")
        lines.append(f"| {shots} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def acceptance(rows):
    """Per shot count: ours - max(zero-shot, probe), means over seeds."""
    out = []
    for shots in SHOTS:
        mean = {
            k: np.mean([r[k] for r in rows if r["shots"] == shots]) for k in rows[0]
        }
        best = max(mean["zero-shot"], mean["probe"])
        out.append(
            f"{shots} shots: linear {mean['ours linear'] - best:+.3f}, "
            f"tip {mean['ours tip'] - best:+.3f} against max(zero-shot, probe); "
            f"probe - zero-shot {mean['probe'] - mean['zero-shot']:+.3f}, "
            f"linear - zero-shot {mean['ours linear'] - mean['zero-shot']:+.3f}"
        )
    return "\n".join(out)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(14, 4.2), sharey=False)
    for ax, (title, rows) in zip(np.atleast_1d(axes), results.items()):
        for name in ["zero-shot", *CONTENDERS]:
            means = [np.mean([r[name] for r in rows if r["shots"] == s]) for s in SHOTS]
            # Tip-Adapter and ours with "tip" often coincide: draw both.
            style = {"zero-shot": "k--", "tip-adapter": "x:"}.get(name, "o-")
            label = "LogisticRegressionCV" if name == "probe" else name
            ax.plot(range(len(SHOTS)), means, style, label=label)
        ax.set_xticks(range(len(SHOTS)), [str(s) for s in SHOTS])
        ax.set_xlabel("labelled images per class")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("held-out accuracy (mean of seeds)")
    np.atleast_1d(axes)[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--plot", default=None, help="where to write the figure")
    parser.add_argument("--cache-dir", default=str(CACHE / "few-shot-embeddings"))
    args = parser.parse_args()
    start = time.perf_counter()
    settings = {
        "shapes: demo model, 24 classes": shapes_setting,
        "digits: tiny CLIP tuned 15 epochs": digits_setting,
        # A model tuned for 3 epochs only: weak prompts, a probe that wins.
        "digits: tuned 3 epochs": partial(digits_setting, epochs=3),
    }
    results = {}
    for title, make in settings.items():
        print(f"\n## {title}", flush=True)
        setting = make()
        rows, fit_times = run(setting, args.seeds, args.cache_dir)
        results[title] = rows
        print(f"\n{table(rows)}\n\n{acceptance(rows)}")
        n_classes = len(setting["options"]["candidate_labels"])
        print(
            f"fit time, 16 shots x {n_classes} classes, linear, embeddings "
            f"cached: median {statistics.median(fit_times):.1f} s over "
            f"{len(fit_times)} seeds"
        )
    print(f"\n{machine()}; {time.perf_counter() - start:.0f} s in all")
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    Path(CACHE).mkdir(parents=True, exist_ok=True)
    main()
