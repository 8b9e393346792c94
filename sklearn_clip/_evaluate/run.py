"""One evaluation run: every model over one dataset, through one embedding cache.

A model that fails to load, or fails while it is measured, is named in the
report's problems and the others' results stand. Every model's estimators
share one on-disk embedding cache (the caller's ``cache_dir``, else a
temporary folder for the run), so each model decodes each image once, and a
second prompt set, the few-shot curve or a later run with the same cache
reads the embeddings instead of decoding again.
"""

import os
import sys
import tempfile
from contextlib import contextmanager

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from sklearn_clip._backends.interface import EncoderHandle
from sklearn_clip._classify.prompts import TEMPLATE_SETS
from sklearn_clip._evaluate import tasks
from sklearn_clip._evaluate.data import load_data
from sklearn_clip._evaluate.report import EvaluationReport, describe_machine
from sklearn_clip._loader.registry import load_model


def named_models(models):
    """``[(name, model)]`` from one model, a list, or a ``{name: model}`` dict."""
    if isinstance(models, dict):
        return [(str(name), model) for name, model in models.items()]
    if isinstance(models, str | os.PathLike | EncoderHandle) or hasattr(models, "fit"):
        models = [models]
    named, seen = [], {}
    for i, model in enumerate(models):
        if isinstance(model, str | os.PathLike):
            name = os.fspath(model).rstrip("/\\").split("/")[-1] or str(model)
        elif isinstance(model, EncoderHandle):
            name = os.path.basename(str(model.source or f"model {i + 1}"))
        else:
            name = f"{type(model).__name__} {i + 1}"
        seen[name] = seen.get(name, 0) + 1
        named.append((name if seen[name] == 1 else f"{name} ({seen[name]})", model))
    return named


def named_prompt_sets(prompts):
    """``[(name, templates)]`` from one ``templates`` value, a list, or a dict."""
    if isinstance(prompts, dict):
        return [(str(name), value) for name, value in prompts.items()]
    if isinstance(prompts, str):
        prompts = [prompts]
    return [
        (value if isinstance(value, str) and value in TEMPLATE_SETS else
         f"prompts {i + 1}", value)
        for i, value in enumerate(prompts)
    ]  # fmt: skip


def resolve_model(model, *, device, dtype):
    """A model handle: loaded from a source, a handle, or a fitted fine-tuner's."""
    if isinstance(model, EncoderHandle | str | os.PathLike):
        return load_model(model, device=device, dtype=dtype)
    # A fine-tuner exists only where its module (and PyTorch) was imported:
    # looked up, not imported, so evaluating exports needs no PyTorch.
    finetuner = sys.modules.get("sklearn_clip._train.finetuner")
    if finetuner is not None and isinstance(model, finetuner.CLIPContrastiveFinetuner):
        check_is_fitted(model)
        return model.model_
    raise TypeError(
        f"cannot evaluate a {type(model).__name__}: give a hub id, a folder, an "
        "export, a handle from load_model or a fitted CLIPContrastiveFinetuner"
    )


def identity(name, handle):
    """The columns that say which model a result belongs to."""
    return {
        "model": name,
        "fingerprint": str(handle.fingerprint)[:16],
        "family": handle.family,
        "backend": "torch" if handle.trainable else "exported",
        "precision": handle.precision_name,
        "device": str(handle.device),
    }


@contextmanager
def cache_folder(cache_dir):
    if cache_dir is not None:
        yield cache_dir
        return
    with tempfile.TemporaryDirectory(prefix="sklearn-clip-evaluate-") as folder:
        yield folder


def _labelled(data, candidate_labels, problems):
    """Rows whose label is in the label space, and that label space."""
    if data.labels is None:
        return np.zeros(data.n_images, bool), np.array([], dtype=object)
    if candidate_labels is None:
        return np.ones(data.n_images, bool), data.classes
    classes = np.unique(np.asarray(list(candidate_labels), dtype=object))
    known = np.isin(data.labels, classes)
    for label in np.unique(data.labels[~known]):
        count = int((data.labels == label).sum())
        problems.append(
            f"label {label!r} ({count} images) is not among candidate_labels: "
            "those images are left out of the accuracies (add the label to "
            "candidate_labels to count them)"
        )
    return known, classes


def evaluate_model(handle, data, keep, classes, settings, problems, bar):
    """The result rows of one model: embeddings, then each task."""
    options = settings["options"]
    embeddings, failed = tasks.embed_images(handle, data.images, options)
    bar.update(1)
    problems.extend(failed.values())
    good = keep & ~np.isin(np.arange(data.n_images), list(failed))
    rows = []
    if classes.size and good.any():
        images = [data.images[i] for i in np.flatnonzero(good)]
        labels = data.labels[good]
        for name, templates in settings["prompts"]:
            rows += tasks.zero_shot(
                handle, images, labels, classes, templates, name, options
            )
            bar.update(1)
        first_name, first = settings["prompts"][0]
        curve = tasks.few_shot_curve(
            handle, images, labels, embeddings[good], classes, first,
            shots=settings["shots"], seeds=settings["seeds"], options=options,
            problems=problems,
        )  # fmt: skip
        for row in curve:
            row["prompts"] = first_name if row["task"] == tasks.FEW_SHOT else None
        rows += curve
        bar.update(len(settings["shots"]) * len(settings["seeds"]))
    if data.captions:
        usable = np.isin(data.pairs[:, 0], np.flatnonzero(~np.isin(
            np.arange(data.n_images), list(failed))))  # fmt: skip
        rows += tasks.retrieval(
            handle, embeddings, data.captions, data.pairs[usable],
            k=settings["k"], ties=settings["ties"], options=options,
        )  # fmt: skip
        bar.update(1)
    return rows


def run_evaluation(models, data, *, prompts, shots, seeds, k, ties,
                   candidate_labels, cache_dir, device, dtype, batch_size,
                   n_jobs, progress, data_options):  # fmt: skip
    """Every model over ``data``: an :class:`EvaluationReport`."""
    data = load_data(data, **data_options)
    problems = list(data.problems)
    keep, classes = _labelled(data, candidate_labels, problems)
    settings = {
        "prompts": named_prompt_sets(prompts),
        "shots": tuple(shots),
        "seeds": tuple(seeds),
        "k": tuple(k),
        "ties": ties,
    }
    named = named_models(models)
    steps = 1 + (len(settings["prompts"]) + len(shots) * len(seeds)) * bool(
        classes.size
    ) + bool(data.captions)  # fmt: skip
    described = {
        "dataset": data.name,
        "n_images": data.n_images,
        "n_classes": len(classes),
        "n_captions": len(data.captions or ()),
        "machine": describe_machine(),
    }
    rows = []
    bar = tqdm(total=len(named) * steps, disable=not progress, desc="evaluating")
    with bar, cache_folder(cache_dir) as folder:
        settings["options"] = {
            "batch_size": batch_size,
            "cache_dir": folder,
            "n_jobs": n_jobs,
        }
        for name, model in named:
            bar.set_postfix_str(name)
            done = bar.n
            try:
                handle = resolve_model(model, device=device, dtype=dtype)
                found = evaluate_model(
                    handle, data, keep, classes, settings, problems, bar
                )
            except Exception as exc:  # one model's failure must not lose the others'
                problems.append(
                    f"model {name!r} failed ({type(exc).__name__}: {exc}); it has "
                    "no results"
                )
                bar.update(done + steps - bar.n)
                continue
            head = {**identity(name, handle), **described}
            rows += [{**head, **row} for row in found]
    results = pd.DataFrame(rows, columns=COLUMNS)
    results = results.astype({"shots": "Int64", "seed": "Int64"})
    # Problems of the data (a class too small for a shot count) meet every model.
    return EvaluationReport(results, list(dict.fromkeys(problems)))


COLUMNS = [
    "model", "fingerprint", "family", "backend", "precision", "device",
    "dataset", "n_images", "n_classes", "n_captions", "task", "prompts",
    "metric", "shots", "seed", "value", "machine",
]  # fmt: skip
