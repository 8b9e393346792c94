"""CLIPContrastiveFinetuner against a plain PyTorch loop, at equal training time.

Both start from the same small random CLIP (32-pixel inputs in 8-pixel
patches, two layers of width 64) and train for the same time, in float32 on
the same number of threads, on two datasets:

- ``digits``: scikit-learn's ``load_digits`` (8 x 8 scans of handwritten
  digits) upscaled to 48 pixels, one caption per class ("a photo of a 7.");
  70 % train, 30 % held out, stratified;
- ``world``: ``sklearn_clip.datasets.make_shapes`` (a coloured shape on a noisy
  background at 48 pixels) with its free captions ("a small red circle on the
  left", "something green at the top", ...); 1,800 pairs train, 600 held out;
  zero-shot classes are the 30 colour-shape pairs ("a red circle").

The plain loop is what a user writes in twenty lines: the stock
``CLIPProcessor`` once over every pair, ``torch.optim.AdamW`` on every
parameter, the symmetric cross-entropy over ``logits_per_image`` and
``logits_per_text`` with class-aware targets (pairs with equal captions are
matches), a cosine schedule, gradient clipping. Ours is
``CLIPContrastiveFinetuner(...).fit(images, captions)`` with its defaults but
the same learning rate, weight decay, batch and clipping.

Equal time on a shared machine: the budget (``--seconds``) is the process's
CPU time on one thread (``torch.set_num_threads(1)`` for both), which on an
idle machine is its wall time, and which other processes' load barely
changes. The whole ``fit`` counts for ours (decoding, validation), the
processor and the loop for the plain one. Each contender's CPU seconds per
epoch come from a two-epoch run, and are updated after every run; a run whose
CPU time misses the budget by more than 12 % is run again with the corrected
number of epochs, so the schedule ends where the time does. Runs alternate
(ours, plain, ours, ...); each row gives its wall time and its steps per CPU
second, so a row that contention skewed shows it. Held-out zero-shot accuracy
and image-to-text recall@1 (over the distinct held-out captions) are
computed alike for both, from the stock processor and the model's forward.

``--ablations`` adds rows that change one of ours' choices at a time: the
validation hold-out (``validation_fraction=0.1``, the former default),
no warm-up, weight decay on every parameter, an unclamped temperature,
PyTorch's default AdamW betas and epsilon, and images resized by the stock
processor before ``fit`` (so ours' own resizing is not used).

Usage: ``python benchmarks/finetune_vs_plain.py [--seconds 8] [--seeds 3]
[--ablations] [--plot accuracy.png] [--json rows.json]``; ``--datasets world
--json world.json`` and ``--merge digits.json,world.json --plot ...`` run the
datasets in separate processes and tabulate them together.
"""

import argparse
import contextlib
import json
import math
import statistics
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from _common import machine, print_table
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch
from transformers import CLIPModel, CLIPProcessor

from sklearn_clip import CLIPContrastiveFinetuner
from sklearn_clip.datasets import COLORS, SHAPES, make_shapes
from sklearn_clip.metrics import recall_at_k
from sklearn_clip.toy import make_tiny_clip

MODEL = {
    "image_size": 32,
    "patch_size": 8,
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 4,
    "context_length": 32,
}
# What both contenders are given; the rest is each one's own choice.
SHARED = {
    "learning_rate": 2e-3,
    "weight_decay": 0.1,
    "batch_size": 64,
    "max_grad_norm": 1.0,
}


def _article(words):
    return ("an " if words[0] in "aeiou" else "a ") + words


def digits(seed, size=48):
    """load_digits upscaled to ``size`` pixels, a caption per class."""
    data = load_digits()
    images = np.stack(
        [
            np.asarray(
                Image.fromarray(np.uint8(image * 255 / 16)).resize(
                    (size, size), Image.Resampling.BILINEAR
                )
            )
            for image in data.images
        ]
    )
    images = np.repeat(images[..., None], 3, axis=-1)
    prompts = [f"a photo of a {digit}." for digit in range(10)]
    train, test = train_test_split(
        np.arange(len(images)), test_size=0.3, stratify=data.target, random_state=seed
    )
    captions = np.array(prompts, dtype=object)[data.target]
    return Bunch(
        train_images=images[train],
        train_captions=captions[train],
        test_images=images[test],
        test_labels=data.target[test],
        test_captions=captions[test],
        prompts=prompts,
    )


def world(seed, n_train=1800, n_test=600, size=48):
    """Generated shapes with free captions; zero-shot over colour-shape pairs."""
    data = make_shapes(n_train + n_test, image_size=size, random_state=seed)
    pairs = [(c, s) for c in COLORS for s in SHAPES]
    labels = np.array([pairs.index(p) for p in zip(data.color, data.shape)])
    test = slice(n_train, None)
    return Bunch(
        train_images=data.images[:n_train],
        train_captions=data.captions[:n_train],
        test_images=data.images[test],
        test_labels=labels[test],
        test_captions=data.captions[test],
        prompts=[_article(f"{c} {s}") for c, s in pairs],
    )


DATASETS = {"digits": digits, "world": world}
TITLES = {"digits": "load_digits, 10 prompts", "world": "generated shapes, 30 prompts"}


@torch.inference_mode()
def evaluate(model, processor, data):
    """Held-out zero-shot accuracy and image-to-text recall@1, alike for both."""
    model.eval()
    distinct, ids = np.unique(data.test_captions, return_inverse=True)
    texts = processor(
        text=list(data.prompts) + list(distinct),
        padding=True,
        truncation=True,
        return_tensors="pt",
    )
    text = F.normalize(model.get_text_features(**texts).pooler_output, dim=-1)
    images = []
    for start in range(0, len(data.test_images), 256):
        batch = list(data.test_images[start : start + 256])
        pixels = processor(images=batch, return_tensors="pt")["pixel_values"]
        images.append(model.get_image_features(pixel_values=pixels).pooler_output)
    image = F.normalize(torch.cat(images), dim=-1).numpy()
    text = text.numpy()
    prompts, captions = text[: len(data.prompts)], text[len(data.prompts) :]
    accuracy = float(np.mean((image @ prompts.T).argmax(1) == data.test_labels))
    return accuracy, recall_at_k(image, captions, ids.reshape(-1), k=1)


def plain_loop(path, data, epochs, seed):
    """The loop a user writes; returns (model, processor, optimiser steps)."""
    torch.manual_seed(seed)
    model = CLIPModel.from_pretrained(path)
    processor = CLIPProcessor.from_pretrained(path)
    inputs = processor(
        images=list(data.train_images),
        text=list(data.train_captions),
        padding=True,
        truncation=True,
        return_tensors="pt",
    )
    labels = torch.as_tensor(np.unique(data.train_captions, return_inverse=True)[1])
    n, batch = len(labels), SHARED["batch_size"]
    total = epochs * math.ceil(n / batch)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=SHARED["learning_rate"],
        weight_decay=SHARED["weight_decay"],
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    model.train()
    for _ in range(epochs):
        for rows in torch.randperm(n).split(batch):
            out = model(
                input_ids=inputs["input_ids"][rows],
                attention_mask=inputs["attention_mask"][rows],
                pixel_values=inputs["pixel_values"][rows],
            )
            same = (labels[rows, None] == labels[None, rows]).float()
            targets = same / same.sum(1, keepdim=True)
            loss = (
                F.cross_entropy(out.logits_per_image, targets)
                + F.cross_entropy(out.logits_per_text, targets)
            ) / 2
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), SHARED["max_grad_norm"])
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    return model, processor, total


def _all_decay(model, weight_decay):
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [{"params": trainable, "weight_decay": weight_decay}]


class _DefaultAdamW(torch.optim.AdamW):
    def __init__(self, params, lr, betas=None, eps=None):
        super().__init__(params, lr=lr)


@contextlib.contextmanager
def _patched(target, name, value):
    """``target.name = value`` for the length of one run."""
    old = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, old)


def _processor_resized(path, images):
    """The stock processor's resized, cropped images, as uint8 HWC arrays."""
    processor = CLIPProcessor.from_pretrained(path).image_processor
    out = processor(
        images=list(images), do_rescale=False, do_normalize=False, return_tensors="np"
    )["pixel_values"]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def _variants():
    """Ours and one-difference ablations: (parameters, patch, inputs)."""
    from sklearn_clip._train import loop, run_state

    none = contextlib.nullcontext
    return {
        "ours": ({}, none, None),
        "ours: no validation split": ({"validation_fraction": None}, none, None),
        "ours: validation_fraction=0.1": ({"validation_fraction": 0.1}, none, None),
        "ours: no warm-up": ({"warmup_fraction": 0.0}, none, None),
        "ours: weight decay on all": (
            {},
            lambda: _patched(run_state, "parameter_groups", _all_decay),
            None,
        ),
        "ours: temperature unclamped": (
            {},
            lambda: _patched(loop, "MAX_LOGIT_SCALE", math.inf),
            None,
        ),
        "ours: AdamW default betas": (
            {},
            lambda: _patched(run_state.torch.optim, "AdamW", _DefaultAdamW),
            None,
        ),
        "ours: processor-resized inputs": ({}, none, _processor_resized),
    }


def _steps_per_epoch(n, batch):
    return n // batch + (n % batch > 1)  # a last batch of one joins the previous


def run_ours(path, data, epochs, seed, variant):
    """Fit the fine-tuner: (model, processor, steps, seconds, set-up seconds)."""
    params, patch, inputs = variant
    images = data.train_images if inputs is None else inputs(path, data.train_images)
    tuner = CLIPContrastiveFinetuner(
        path,
        **SHARED,
        max_epochs=epochs,
        random_state=seed,
        dtype="float32",
        **params,
    )
    start = time.process_time()
    with patch():
        tuner.fit(images, data.train_captions)
    seconds = time.process_time() - start
    fraction = tuner.validation_fraction
    n_train = len(images) - (
        0 if fraction is None else math.ceil(fraction * len(images))
    )
    steps = epochs * _steps_per_epoch(n_train, SHARED["batch_size"])
    processor = CLIPProcessor.from_pretrained(path)
    return tuner.model_.model, processor, steps, seconds


def run_plain(path, data, epochs, seed):
    """The plain loop, timed: (model, processor, steps, seconds, set-up seconds)."""
    start = time.process_time()
    model, processor, steps = plain_loop(path, data, epochs, seed)
    return model, processor, steps, time.process_time() - start


def one_run(name, path, data, epochs, seed):
    """Train ``name`` for ``epochs`` and evaluate it: a row (without dataset)."""
    wall = time.perf_counter()
    if name == "plain":
        model, processor, steps, seconds = run_plain(path, data, epochs, seed)
    else:
        variant = _variants()[name]
        model, processor, steps, seconds = run_ours(path, data, epochs, seed, variant)
    wall = time.perf_counter() - wall
    accuracy, recall = evaluate(model, processor, data)
    return {
        "contender": name,
        "seed": seed,
        "seconds": seconds,
        "wall_seconds": wall,
        "epochs": epochs,
        "steps": steps,
        "steps_per_s": steps / seconds,
        "accuracy": accuracy,
        "recall_at_1": recall,
    }


def fill(name, path, data, seed, budget, per_epoch, tolerance=0.12):
    """A run whose CPU time is within ``tolerance`` of ``budget`` (two tries).

    ``per_epoch`` is the contender's CPU seconds per epoch so far (set-up
    included); a run that misses the budget corrects it and runs again.
    """
    for _ in range(2):
        epochs = max(1, round(budget / per_epoch))
        row = one_run(name, path, data, epochs, seed)
        per_epoch = row["seconds"] / epochs
        if abs(row["seconds"] - budget) <= tolerance * budget:
            break
    return row, per_epoch


def run(dataset, contenders, *, seconds=8.0, seeds=(0, 1, 2), budgets=()):
    """Every contender on every seed, interleaved; a list of row dicts.

    ``budgets`` adds runs of seed ``seeds[0]`` at those times (the plot's
    points); each contender's cost per epoch comes from a two-epoch run first.
    """
    costs, rows = {}, []
    for round_, seed in enumerate(seeds):
        path = make_tiny_clip(**MODEL, random_state=seed)
        data = DATASETS[dataset](seed)
        shift = round_ % len(contenders)
        for name in contenders[shift:] + contenders[:shift]:
            if name not in costs:
                costs[name] = one_run(name, path, data, 2, seed)["seconds"] / 2
            plotted = round_ == 0 and name in ("ours", "plain")
            wanted = [seconds] + (list(budgets) if plotted else [])
            for budget in wanted:
                row, costs[name] = fill(name, path, data, seed, budget, costs[name])
                row.update(dataset=dataset, budget=budget)
                rows.append(row)
                print(_progress(row), flush=True)
    return rows


def _progress(row):
    return (
        f"  {row['dataset']} seed {row['seed']} {row['contender']}: "
        f"{row['seconds']:.1f} CPU s (budget {row['budget']:.0f}; "
        f"{row['wall_seconds']:.1f} s wall), "
        f"{row['steps']} steps, accuracy {row['accuracy']:.3f}"
    )


def summary(rows, seconds):
    """One row per (dataset, contender): means over seeds, gaps to the plain loop."""
    full = [row for row in rows if row["budget"] == seconds]
    plain = {(r["dataset"], r["seed"]): r for r in full if r["contender"] == "plain"}
    table = []
    for dataset in dict.fromkeys(r["dataset"] for r in full):
        for name in dict.fromkeys(r["contender"] for r in full):
            mine = [
                r for r in full if r["dataset"] == dataset and r["contender"] == name
            ]
            gaps = [
                r["accuracy"] - plain[dataset, r["seed"]]["accuracy"]
                for r in mine
                if (dataset, r["seed"]) in plain
            ]

            def mean(key, rows=mine):
                return statistics.mean(r[key] for r in rows)

            table.append(
                {
                    "dataset": dataset,
                    "contender": name,
                    "CPU s": f"{mean('seconds'):.1f}",
                    "wall s": f"{mean('wall_seconds'):.1f}",
                    "steps": f"{mean('steps'):.0f}",
                    "steps/s": f"{mean('steps_per_s'):.1f}",
                    "zero-shot accuracy": f"{mean('accuracy'):.3f}",
                    "recall@1": f"{mean('recall_at_1'):.3f}",
                    "vs plain (mean; worst seed)": (
                        f"{statistics.mean(gaps):+.3f}; {min(gaps):+.3f}"
                        if gaps
                        else "-"
                    ),
                }
            )
    return table


def plot(rows, path):
    """Held-out zero-shot accuracy against wall time, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seed = min(r["seed"] for r in rows)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    figure, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.8))
    for ax, dataset in zip(np.atleast_1d(axes), datasets):
        for name, marker in (("ours", "o-"), ("plain", "s--")):
            mine = sorted(
                (r["seconds"], r["accuracy"])
                for r in rows
                if (r["dataset"], r["contender"], r["seed"]) == (dataset, name, seed)
            )
            if mine:
                label = "CLIPContrastiveFinetuner" if name == "ours" else "plain loop"
                ax.plot(*zip(*mine), marker, label=label)
        ax.set_title(TITLES.get(dataset, dataset))
        ax.set_xlabel("training time (s of CPU, one thread)")
        ax.set_ylabel("held-out zero-shot accuracy")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="budget per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", default="digits,world")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ablations", action="store_true")
    parser.add_argument("--only", default=None, help="comma-separated contenders")
    parser.add_argument("--plot", default=None, help="write the plot to this PNG")
    parser.add_argument("--json", default=None, help="write the rows to this file")
    parser.add_argument(
        "--merge", default=None, help="comma-separated --json files to tabulate"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)  # the same for both contenders
    contenders = ["ours", "plain"]
    if args.ablations:
        contenders += [name for name in _variants() if name != "ours"]
    if args.only:
        contenders = args.only.split(",")
    budgets = (args.seconds / 4, args.seconds / 2) if args.plot else ()
    print(machine())
    print(f"float32, {args.seconds:.0f} CPU s per run, seeds 0-{args.seeds - 1}")
    rows = []
    for name in args.merge.split(",") if args.merge else ():
        with open(name) as file:
            saved = json.load(file)
        print(f"{name}: {saved['machine']}")
        rows += saved["rows"]
    for dataset in args.datasets.split(",") if not args.merge else ():
        rows += run(
            dataset,
            contenders,
            seconds=args.seconds,
            seeds=tuple(range(args.seeds)),
            budgets=budgets,
        )
    print()
    print_table(summary(rows, args.seconds), list(summary(rows, args.seconds)[0]))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"machine": machine(), "rows": rows}, file, indent=1)
    if args.plot:
        plot(rows, args.plot)
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
