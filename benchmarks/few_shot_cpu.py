"""Accuracy against shots per class: zero-shot, a probe, and the few-shot heads.

The world: the small CLIP that ``sklearn_clip.demo.trained_model`` trains on
generated coloured shapes, asked for the *shape* of held-out images (a task
whose zero-shot accuracy leaves room). For each number of shots per class and
each seed, a labelled set is drawn from a pool of generated images, and four
classifiers are scored on the same 1,000 held-out images:

- zero-shot (``CLIPZeroShotClassifier``; learns nothing from the shots);
- a linear probe (``LogisticRegression`` on the unit-length embeddings, its
  ``C`` chosen by 5-fold cross-validation from 2 shots on, the default C=1 at
  one shot);
- ``CLIPFewShotClassifier(method="linear")`` and ``method="tip"``, with
  ``regularization="cv"`` (the default).

Usage:
``python benchmarks/few_shot_cpu.py [--seeds 5] [--plot docs/images/few_shot.png]``
"""

import argparse
import time
import warnings

import numpy as np
from _common import machine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sklearn_clip import (
    CLIPEmbeddingTransformer,
    CLIPFewShotClassifier,
    CLIPZeroShotClassifier,
)
from sklearn_clip.datasets import COLORS, SHAPES, make_shapes
from sklearn_clip.demo import trained_model

SHOTS = (0, 1, 2, 4, 8, 16)
# The same trained model as the slow tests (trained once, then read from disk).
MODEL = {"n_train": 4000, "max_epochs": 20}


def _probe(shots):
    probe = LogisticRegression(max_iter=2000)
    if shots < 2:
        return probe
    grid = {"C": np.logspace(-2, 3, 6)}
    return GridSearchCV(probe, grid, cv=StratifiedKFold(min(5, shots)))


def _draw(labels, shots, seed):
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.choice(np.flatnonzero(labels == s), shots, replace=False) for s in SHAPES]
    )


def run(seeds, cache_dir):
    path = trained_model(**MODEL)
    pool = make_shapes(800, image_size=32, random_state=101)
    test = make_shapes(1000, image_size=32, random_state=102)
    pool_y, test_y = pool.shape.astype(str), test.shape.astype(str)
    options = {
        "candidate_labels": list(SHAPES),
        "templates": ["a {}", *(f"a {color} {{}}" for color in COLORS)],
        "cache_dir": cache_dir,
    }
    zero_shot = CLIPZeroShotClassifier(path, **options).fit()
    zero = zero_shot.score(test.images, test_y)
    embed = CLIPEmbeddingTransformer(path, cache_dir=cache_dir).fit(pool.images)
    pool_emb, test_emb = embed.transform(pool.images), embed.transform(test.images)
    rows = []
    for shots in SHOTS:
        for seed in range(seeds):
            row = {"shots": shots, "seed": seed, "zero-shot": zero}
            if shots == 0:
                for method in ("linear", "tip"):
                    clf = CLIPFewShotClassifier(path, method=method, **options)
                    row[method] = clf.fit().score(test.images, test_y)
                row["probe"] = np.nan
                rows.append(row)
                break  # nothing to draw: one row
            chosen = _draw(pool_y, shots, seed)
            probe = _probe(shots).fit(pool_emb[chosen], pool_y[chosen])
            row["probe"] = probe.score(test_emb, test_y)
            for method in ("linear", "tip"):
                clf = CLIPFewShotClassifier(
                    path, method=method, random_state=seed, **options
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # 1 shot: the fallback warning
                    clf.fit(pool.images[chosen], pool_y[chosen])
                row[method] = clf.score(test.images, test_y)
            rows.append(row)
            print(row, flush=True)
    return rows


def table(rows):
    """Markdown: mean (min-max over seeds) per shots and classifier."""
    names = ["zero-shot", "probe", "linear", "tip"]
    lines = [
        "| shots | seeds | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for shots in SHOTS:
        group = [r for r in rows if r["shots"] == shots]
        cells = []
        for name in names:
            values = np.array([r[name] for r in group], dtype=float)
            if np.isnan(values).all():
                cells.append("-")
            elif len(values) == 1 or np.ptp(values) == 0:
                cells.append(f"{values.mean():.3f}")
            else:
                cells.append(
                    f"{values.mean():.3f} ({values.min():.3f}-{values.max():.3f})"
                )
        lines.append(f"| {shots} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, style in [
        ("zero-shot", "k--"),
        ("probe", "o-"),
        ("linear", "s-"),
        ("tip", "^-"),
    ]:
        means = [
            np.nanmean([r[name] for r in rows if r["shots"] == s])
            if any(not np.isnan(r[name]) for r in rows if r["shots"] == s)
            else np.nan
            for s in SHOTS
        ]
        label = {"linear": "few-shot, linear", "tip": "few-shot, tip"}.get(name, name)
        if name == "probe":
            label = "LogisticRegression probe"
        ax.plot(range(len(SHOTS)), means, style, label=label)
    ax.set_xticks(range(len(SHOTS)), [str(s) for s in SHOTS])
    ax.set_xlabel("labelled images per class")
    ax.set_ylabel("accuracy on 1,000 held-out images")
    seeds = max(r["seed"] for r in rows) + 1
    ax.set_title(f"Shape of generated images, demo CLIP (mean of {seeds} seeds)")
    ax.legend()
    ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--plot", default=None, help="where to write the figure")
    parser.add_argument("--cache-dir", default=None, help="embedding cache folder")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = run(args.seeds, args.cache_dir)
    print(f"\n{machine()}; {time.perf_counter() - start:.0f} s in all\n")
    print(table(rows))
    if args.plot:
        plot(rows, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
