"""Wall-clock figures of small jobs that the fast test suite used to assert.

Speed is measured here rather than asserted in tests (a shared machine makes
any bound flaky): ``make_shapes`` images per second, and the seconds one
small fine-tuning run takes on a tiny model.

Run: ``python benchmarks/small_cpu.py``; it prints a markdown table.
"""

import time
import warnings

import numpy as np
from _common import machine

from sklearn_clip import CLIPContrastiveFinetuner
from sklearn_clip.datasets import make_shapes
from sklearn_clip.toy import make_tiny_clip

# The small fine-tuning run of tests/train/test_finetune.py (FAST and TRAIN there).
MODEL = {
    "image_size": 16,
    "patch_size": 4,
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 2,
    "context_length": 16,
}
TRAIN = {
    "learning_rate": 3e-3,
    "weight_decay": 0.05,
    "max_epochs": 3,
    "batch_size": 8,
    "caption_template": "a {} shape",
    "random_state": 0,
}


def best_of(rounds, run):
    """The fastest of ``rounds`` runs, in seconds."""
    best = np.inf
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    n_samples = 4000
    make_shapes(n_samples=10, random_state=0)  # warm up imports and caches
    seconds = best_of(3, lambda: make_shapes(n_samples=n_samples, image_size=64))
    rows = [("make_shapes, 64 px", f"{n_samples / seconds:,.0f} images/s")]

    path = make_tiny_clip(**MODEL)
    shapes = make_shapes(32, image_size=16, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")

        def fit():
            CLIPContrastiveFinetuner(path, **TRAIN).fit(shapes.images, shapes.color)

        rows.append(("fine-tune 32 pairs, tiny model", f"{best_of(2, fit):.1f} s"))
    print(machine())
    print("\n| job | figure |\n|---|---|")
    for name, figure in rows:
        print(f"| {name} | {figure} |")


if __name__ == "__main__":
    main()
