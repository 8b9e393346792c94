"""Write the 0.1.0 pickles of tests/data with sklearn-clip 0.1.0.

Run with the 0.1.0 tree (commit 0e3376c, checked out beside this one with
``git worktree add ../sklearn-clip-0.1.0 0e3376c``) first on ``PYTHONPATH``::

    cd tests/data
    PYTHONPATH=../../../sklearn-clip-0.1.0 python make_estimators_0_1_0.py \
        estimators-0.1.0.pkl
    PYTHONPATH=../../../sklearn-clip-0.1.0 python make_estimators_0_1_0.py --more \
        estimators-0.1.0-more.pkl

The first file holds a zero-shot classifier and an embedding transformer. The
second (``--more``) holds the other estimator classes of 0.1.0: a few-shot
classifier (both heads), nearest-neighbours searchers pickled by default
(without weights: they re-resolve ``model``, a path relative to the working
directory, so the model's files travel in the data file; one with a loaded
handle as ``model``, one with the faiss index) and with their weights, and a
contrastive fine-tuner (pickled as 0.1.0 pickles it: the tuned weights
inside). Each entry comes with what it answered then, at float32.
"""

import os
import pickle
import sys
import tempfile
from pathlib import Path

import sklearn_clip
from sklearn_clip.datasets import make_shapes
from sklearn_clip.toy import make_tiny_clip

COMMON = {"device": "cpu", "dtype": "float32", "store_weights_in_pickle": True}


def zero_shot_and_embedding():
    from sklearn_clip import CLIPEmbeddingTransformer, CLIPZeroShotClassifier

    path = make_tiny_clip(tempfile.mkdtemp())
    data = make_shapes(6, image_size=30, random_state=0)
    clf = CLIPZeroShotClassifier(path, templates="{}", **COMMON).fit(
        None, ["red", "green", "blue"]
    )
    emb = CLIPEmbeddingTransformer(path, **COMMON).fit(data.images)
    return {
        "version": sklearn_clip.__version__,
        "images": data.images,
        "zero_shot": pickle.dumps(clf),
        "zero_shot_proba": clf.predict_proba(data.images),
        "embedding": pickle.dumps(emb),
        "embedding_out": emb.transform(data.images),
    }


def the_other_estimators():
    from sklearn_clip import (
        CLIPContrastiveFinetuner,
        CLIPFewShotClassifier,
        CLIPNearestNeighbors,
        load_model,
    )

    # The model sits in the working directory under a relative name, so that
    # a searcher pickled without weights finds it again wherever the test
    # writes the same files and makes that folder the working directory.
    os.chdir(tempfile.mkdtemp())
    model = "tiny-clip"
    make_tiny_clip(model)
    files = {p.name: p.read_bytes() for p in Path(model).iterdir() if p.is_file()}
    colors = ["red", "green", "blue"]
    data = make_shapes(12, image_size=30, colors=colors, random_state=0)
    queries = make_shapes(4, image_size=30, colors=colors, random_state=1)
    texts = ["a red circle", "something blue", "a green square"]
    out = {
        "version": sklearn_clip.__version__,
        "model_dir": model,
        "model_files": files,
        "images": data.images,
        "labels": data.color,
        "queries": queries.images,
        "texts": texts,
    }
    for method in ("linear", "tip"):
        clf = CLIPFewShotClassifier(
            model, templates="{}", method=method, cv=2, random_state=0, **COMMON
        ).fit(data.images, data.color)
        out[f"few_shot_{method}"] = pickle.dumps(clf)
        out[f"few_shot_{method}_classes"] = clf.classes_
        out[f"few_shot_{method}_proba"] = clf.predict_proba(queries.images)
    # By default (the model re-resolved from its path), with the weights, with
    # a loaded handle as model= (it pickles as a reference to its folder), and
    # with the approximate index (it pickles the faiss graph).
    handle = load_model(model, device="cpu", dtype="float32")
    searchers = {
        "neighbors": {},
        "neighbors_weights": {"store_weights_in_pickle": True},
        "neighbors_handle": {"model": handle},
        "neighbors_faiss": {"index": "faiss"},
    }
    for name, options in searchers.items():
        settings = {"model": model, "device": "cpu", "dtype": "float32", **options}
        search = CLIPNearestNeighbors(n_neighbors=3, **settings).fit(data.images)
        out[name] = pickle.dumps(search)
        out[f"{name}_images"] = search.kneighbors(queries.images)
        out[f"{name}_texts"] = search.kneighbors(texts, query_modality="text")
    tuner = CLIPContrastiveFinetuner(
        model,
        learning_rate=1e-3,
        max_epochs=2,
        batch_size=4,
        caption_template="a {} shape",
        random_state=0,
        device="cpu",
        dtype="float32",
    ).fit(data.images, data.color)
    out["finetuner"] = pickle.dumps(tuner)
    out["finetuner_images"] = tuner.transform(queries.images)
    out["finetuner_texts"] = tuner.transform(texts, modality="text")
    out["finetuner_score"] = tuner.score(data.images, data.color)
    out["finetuner_n_iter"] = tuner.n_iter_
    return out


def main():
    # Today's tree says "0.1.0" too: check the modules, not the version string.
    here = Path(sklearn_clip.__file__).parent
    if not (here / "_few_shot.py").is_file():
        sys.exit(f"{here} is not the 0.1.0 tree (commit 0e3376c)")
    more = sys.argv[1] == "--more"
    target = os.path.abspath(sys.argv[-1])
    out = the_other_estimators() if more else zero_shot_and_embedding()
    with open(target, "wb") as f:
        pickle.dump(out, f)


if __name__ == "__main__":
    main()
