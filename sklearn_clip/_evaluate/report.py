"""What an evaluation found: the results table, what was left out, the machine, a plot.

The results are one long table, a row per measured number, so that models,
prompt sets, shot counts and seeds compare with pandas' own tools; each row
carries the model's identity (its name, weights' fingerprint, family,
backend and precision), the dataset's name and size, and the machine.
"""

import os
import platform

import numpy as np

# The CPU features that decide CPU speeds and ``dtype="auto"``.
_CPU_FEATURES = ("avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


def describe_machine():
    """Name the CPU, its bf16 and int8 units, and the cores, in one line.

    Returns
    -------
    str
        Such as ``"AMD EPYC 9R14 (avx512_bf16, avx512_vnni), 2 cores, Linux"``.

    Examples
    --------
    >>> from sklearn_clip.evaluate import describe_machine
    >>> "cores" in describe_machine()
    True
    """
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    features = [f for f in _CPU_FEATURES if f in flags]
    return (
        f"{name} ({', '.join(features) or 'no bf16/int8 units'}), "
        f"{os.cpu_count()} cores, {platform.system()}"
    )


class EvaluationReport:
    """What :func:`~sklearn_clip.evaluate.evaluate` measured.

    Parameters
    ----------
    results : pandas.DataFrame
        One row per number: ``model``, ``fingerprint``, ``family``,
        ``backend``, ``precision``, ``device``, ``dataset``, ``n_images``,
        ``n_classes``, ``n_captions``, ``task`` (``"zero-shot"``,
        ``"few-shot"``, ``"linear probe"``, ``"retrieval"``), ``prompts``,
        ``metric``, ``shots``, ``seed``, ``value`` and ``machine``.
    problems : list of str
        What was left out (models that failed, images, rows, classes), and why.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_clip.evaluate import EvaluationReport
    >>> report = EvaluationReport(pd.DataFrame(), ["model 'x' failed to load"])
    >>> report
    EvaluationReport(0 results, 1 problem)
    """

    def __init__(self, results, problems=()):
        self.results = results
        self.problems = list(problems)

    def summary(self):
        """Average over seeds: a row per model, task, prompts, shots and metric.

        Returns
        -------
        pandas.DataFrame
            Columns ``mean``, ``std`` and ``n`` (seeds) per ``metric``.

        Examples
        --------
        >>> import pandas as pd
        >>> from sklearn_clip.evaluate import EvaluationReport
        >>> results = pd.DataFrame({"model": ["m", "m"], "task": ["few-shot"] * 2,
        ...     "prompts": ["simple"] * 2, "shots": [1, 1], "seed": [0, 1],
        ...     "metric": ["top-1"] * 2, "value": [0.5, 0.7]})
        >>> EvaluationReport(results).summary()["mean"].round(2).tolist()
        [0.6]
        """
        keys = ["model", "task", "prompts", "shots", "metric"]
        table = self.results.fillna({"prompts": "", "shots": 0})
        grouped = table.groupby(keys, sort=False)["value"]
        return grouped.agg(["mean", "std", "count"]).rename(columns={"count": "n"})

    def plot(self, figure=None):
        """Zero-shot accuracy, few-shot curves and retrieval recall, side by side.

        Parameters
        ----------
        figure : matplotlib.figure.Figure, default=None
            Where to draw; a new figure by default.

        Returns
        -------
        matplotlib.figure.Figure
            One panel per task that has results.

        Examples
        --------
        >>> import pandas as pd
        >>> from sklearn_clip.evaluate import EvaluationReport
        >>> results = pd.DataFrame({"model": ["m"], "task": ["zero-shot"],
        ...     "prompts": ["simple"], "shots": [None], "seed": [None],
        ...     "metric": ["top-1"], "value": [0.5]})
        >>> len(EvaluationReport(results).plot().axes)
        1
        """
        from matplotlib.figure import Figure

        results = self.results
        panels = [
            (task, draw)
            for task, draw in (
                ("zero-shot", _draw_zero_shot),
                ("few-shot", _draw_few_shot),
                ("retrieval", _draw_retrieval),
            )
            if len(results) and (results["task"] == task).any()
        ]
        if figure is None:
            figure = Figure(figsize=(5 * max(len(panels), 1), 4), layout="constrained")
        for i, (_, draw) in enumerate(panels):
            draw(figure.add_subplot(1, len(panels), i + 1), results)
        return figure

    def __repr__(self):
        n, p = len(self.results), len(self.problems)
        return f"EvaluationReport({n} results, {p} problem{'s' * (p != 1)})"


def _bars(ax, table, group, series):
    """Grouped bars: one group per value of ``group``, one bar per ``series``."""
    groups = list(dict.fromkeys(table[group]))
    names = list(dict.fromkeys(table[series]))
    width = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        part = table[table[series] == name].groupby(group, sort=False)["value"].mean()
        heights = [part.get(g, np.nan) for g in groups]
        ax.bar(np.arange(len(groups)) + j * width, heights, width, label=str(name))
    ax.set_xticks(np.arange(len(groups)) + width * (len(names) - 1) / 2)
    ax.set_xticklabels([str(g) for g in groups], rotation=15)
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small")


def _draw_zero_shot(ax, results):
    table = results[(results["task"] == "zero-shot") & (results["metric"] == "top-1")]
    _bars(ax, table, "model", "prompts")
    ax.set_title("zero-shot top-1 accuracy, by prompt set")


def _draw_few_shot(ax, results):
    for (model, task), part in results[
        results["task"].isin(["few-shot", "linear probe"])
    ].groupby(["model", "task"], sort=False):
        curve = part.groupby("shots")["value"].mean()
        style = "-o" if task == "few-shot" else "--s"
        ax.plot(curve.index, curve.values, style, label=f"{model}: {task}")
    shots = sorted(set(results["shots"].dropna().astype(int)))
    ax.set_xscale("log", base=2)
    ax.set_xticks(shots, [str(s) for s in shots])
    ax.set_xlabel("labelled images per class")
    ax.set_ylim(0, 1)
    ax.set_title("few-shot top-1 accuracy")
    ax.legend(fontsize="small")


def _draw_retrieval(ax, results):
    table = results[
        (results["task"] == "retrieval") & results["metric"].str.contains("recall@")
    ]
    short = table["metric"].str.replace("_to_", " to ").str.replace("_recall", " R")
    _bars(ax, table.assign(metric=short), "metric", "model")
    ax.set_title("retrieval recall@k")
