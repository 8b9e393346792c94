"""Evaluating models on your own data: zero-shot, few-shot and retrieval, in one table.

:func:`evaluate` runs one or more models over a labelled folder, a captioned
table or a Hugging Face dataset and returns an :class:`EvaluationReport`: a
pandas table of every number (with the model's identity, the dataset's size
and the machine), the problems met on the way, and a plot.
:func:`benchmark_model` hands a model to harnesses that take a model, a
transform and a tokenizer, such as CLIP_benchmark.
"""

from sklearn_clip._evaluate.benchmark import BenchmarkModel, benchmark_model
from sklearn_clip._evaluate.data import EvaluationData, load_data
from sklearn_clip._evaluate.report import EvaluationReport, describe_machine
from sklearn_clip._evaluate.run import run_evaluation
from sklearn_clip._evaluate.tasks import few_shot_split
from sklearn_clip.metrics import TIES

__all__ = [
    "evaluate",
    "load_evaluation_data",
    "few_shot_split",
    "benchmark_model",
    "describe_machine",
    "BenchmarkModel",
    "EvaluationData",
    "EvaluationReport",
]


def evaluate(
    models,
    data,
    *,
    prompts="simple",
    shots=(1, 2, 4, 8),
    seeds=(0,),
    k=(1, 5, 10),
    ties="pessimistic",
    candidate_labels=None,
    cache_dir=None,
    device="auto",
    dtype="auto",
    batch_size=32,
    n_jobs=None,
    progress=True,
    image_column="image",
    label_column="label",
    caption_column="caption",
):
    """Measure models on a dataset: zero-shot, few-shot and retrieval.

    With labels: zero-shot top-1, top-5 (with more than five classes) and
    balanced accuracy for each prompt set, and a few-shot curve:
    :class:`~sklearn_clip.CLIPFewShotClassifier` (with the first prompt set)
    against a linear probe (:class:`~sklearn.linear_model.LogisticRegression`
    on the image embeddings) at each shot count and seed, on the rows of
    :func:`few_shot_split`. With captions: recall@k, mean rank and mean
    reciprocal rank in both directions, every caption of an image counting
    (:func:`sklearn_clip.metrics.retrieval_report`).

    Parameters
    ----------
    models : model, list of models, or dict of {name: model}
        Each a hub id, a local folder (a checkpoint or an export), a handle
        from :func:`~sklearn_clip.load_model` or a fitted
        :class:`~sklearn_clip.CLIPContrastiveFinetuner`. One that fails to
        load is named in the report's problems; the others still run.
    data : str, os.PathLike, DataFrame, datasets.Dataset or EvaluationData
        A folder with one sub-folder of images per class; a ``.csv`` or
        ``.parquet`` table (relative paths are read from its folder) or a
        DataFrame with an image column and a label and/or caption column
        (rows of one image are its captions); or a Hugging Face dataset with
        such columns. See :func:`load_evaluation_data`.
    prompts : str, list or dict, default="simple"
        Prompt sets to compare: each anything ``templates=`` of
        :class:`~sklearn_clip.CLIPZeroShotClassifier` takes; a dict names them.
    shots : sequence of int, default=(1, 2, 4, 8)
        Labelled images per class on the few-shot curve (no curve if empty).
    seeds : sequence of int, default=(0,)
        The seeds of the few-shot draws (and of the learners), one run each.
    k : sequence of int, default=(1, 5, 10)
        The ``k`` of retrieval recall@k.
    ties : {"pessimistic", "optimistic", "index"}, default="pessimistic"
        How retrieval ranks ties (see :mod:`sklearn_clip.metrics`).
    candidate_labels : sequence, default=None
        The label space of the classifiers; None: the data's labels. Images
        with a label outside it are left out of the accuracies, and named.
    cache_dir : str or os.PathLike, default=None
        The embedding cache (see ``cache_dir`` of the estimators). None: a
        temporary one for this call, so that each image is decoded once per
        model; give a folder to reuse the embeddings in a later call.
    device : str, default="auto"
        Where PyTorch models run: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
    dtype : {"auto", "float32", "bfloat16", "float16"}, default="auto"
        The weights' precision, as :func:`~sklearn_clip.load_model` takes it.
        Pin ``"float32"`` for numbers that read the same on every CPU.
    batch_size : int, default=32
        Rows encoded per forward pass.
    n_jobs : int, default=None
        Threads that decode images, as the estimators' ``n_jobs``.
    progress : bool, default=True
        Show a progress bar over the steps of every model.
    image_column : str, default="image"
        The image column of a table or dataset.
    label_column : str, default="label"
        The label column of a table or dataset, if it has labels.
    caption_column : str, default="caption"
        The caption column of a table or dataset, if it has captions.

    Returns
    -------
    EvaluationReport
        ``results`` (a pandas table), ``problems``, ``summary()``, ``plot()``.

    Examples
    --------
    >>> from sklearn_clip.datasets import make_shapes
    >>> from sklearn_clip.evaluate import EvaluationData, evaluate
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> shapes = make_shapes(12, image_size=16, random_state=0)
    >>> data = EvaluationData(list(shapes.images), labels=shapes.shape)
    >>> report = evaluate(make_tiny_clip(), data, shots=[1], dtype="float32",
    ...                   progress=False)
    >>> report.results[["task", "metric", "shots", "value"]].round(2)
               task    metric  shots  value
    0     zero-shot     top-1   <NA>   0.33
    1     zero-shot  balanced   <NA>   0.20
    2      few-shot     top-1      1   0.43
    3  linear probe     top-1      1   0.29
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}; got {ties!r}")
    return run_evaluation(
        models,
        data,
        prompts=prompts,
        shots=shots,
        seeds=seeds,
        k=k,
        ties=ties,
        candidate_labels=candidate_labels,
        cache_dir=cache_dir,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        n_jobs=n_jobs,
        progress=progress,
        data_options={
            "image_column": image_column,
            "label_column": label_column,
            "caption_column": caption_column,
        },
    )


def load_evaluation_data(
    data, *, image_column="image", label_column="label", caption_column="caption"
):
    """Read the images, labels and captions that :func:`evaluate` measures on.

    A folder's class folders are read in sorted order, each one's images
    sorted by path; a table's rows keep their order, rows with the same
    image path (or bytes) being one image with several captions. Rows that
    cannot be used are left out and named in the result's ``problems``.

    Parameters
    ----------
    data : str, os.PathLike, DataFrame, datasets.Dataset or EvaluationData
        See :func:`evaluate`.
    image_column, label_column, caption_column : str
        The columns of a table or dataset.

    Returns
    -------
    EvaluationData
        ``images``, ``labels``, ``captions``, ``pairs`` and ``problems``.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_clip.evaluate import load_evaluation_data
    >>> table = pd.DataFrame({"image": [b"x", b"x", b"y"],
    ...                       "caption": ["one", "uno", "two"]})
    >>> data = load_evaluation_data(table)
    >>> data.n_images, data.captions, data.pairs.tolist()
    (2, ['one', 'uno', 'two'], [[0, 0], [0, 1], [1, 2]])
    """
    return load_data(
        data,
        image_column=image_column,
        label_column=label_column,
        caption_column=caption_column,
    )
