"""Shared set-up for the benchmarks: checkpoints, JPEG files, timing, tables.

Every contender in a script runs in the same process, on the same checkpoint
(a CLIP of a released model's shape with random weights, written locally with
``save_pretrained``: the same compute as the real one) and the same files.
Contenders are interleaved round by round and the median of the rounds is
reported, so that a burst of load on a shared machine hits them all alike.

Files are written once under ``~/.cache/sklearn-clip-bench`` (or
``$SKLEARN_CLIP_BENCH_DIR``) and reused.
"""

import os
import platform
import re
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from sklearn_clip.datasets import make_photo
from sklearn_clip.toy import make_random_clip, make_tiny_clip

CACHE = Path(
    os.environ.get(
        "SKLEARN_CLIP_BENCH_DIR", Path.home() / ".cache" / "sklearn-clip-bench"
    )
)


# 100 everyday object names (written for these benchmarks).
LABELS = """
apple backpack banana basket bear bed bench bicycle bird boat book bottle bowl
bread bridge broom bucket bus butterfly cake camel camera candle car carrot
castle cat chair cheese clock coat cow crab cup deer desk dog dolphin
door duck elephant fence fish flower fork fox frog giraffe glasses guitar
hammer hat helicopter horse house kettle key kite knife ladder lamp leaf lemon
lion mirror monkey motorcycle mouse mushroom onion orange owl
penguin piano pillow pizza plane rabbit robot rocket scissors sheep
shoe snake sofa spoon star strawberry table tiger tomato tractor train tree
truck umbrella violin whale window zebra
""".split()


def _words():
    """Every word of the labels and the prompt templates, as whole tokens.

    The released CLIP tokenizer keeps such common words whole; the toy one
    would spell them out in characters and make every prompt twice as long.
    """
    from sklearn_clip._classify.prompts import OPENAI_IMAGENET_TEMPLATES

    text = " ".join([*LABELS, *OPENAI_IMAGENET_TEMPLATES, "this is a photo of {}."])
    return sorted(set(re.findall(r"[a-z]+", text.lower())))


def checkpoint(architecture="ViT-B/32"):
    """A locally saved CLIP of the given shape with random weights (built once)."""
    path = CACHE / f"{architecture.replace('/', '-')}-words"
    if not (path / "model.safetensors").exists():
        make_random_clip(path, architecture=architecture, words=_words())
    return str(path)


def small_checkpoint():
    """A small CLIP that still takes 224-pixel images (for memory and cache runs)."""
    path = CACHE / "small-224"
    if not (path / "model.safetensors").exists():
        make_tiny_clip(path, image_size=224, patch_size=32, hidden_size=64)
    return str(path)


def jpeg_files(n=256, size=(640, 480), quality=90, seed=0):
    """``n`` photo-like JPEG files of ``size`` (width, height); paths as str."""
    folder = CACHE / f"photo-{size[0]}x{size[1]}-q{quality}-s{seed}"
    paths = [folder / f"{i:05d}.jpg" for i in range(n)]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        for i in missing:
            image = make_photo(*size, random_state=[seed, i])
            Image.fromarray(image).save(paths[i], quality=quality)
    return [str(p) for p in paths]


def interleaved(contenders, rounds=3, warmup=1, after_round=None):
    """Median seconds of each ``{name: function}``, run round-robin.

    Each round runs every contender once, in a rotated order, so slow periods
    of a shared machine spread over all of them. Returns the medians and the
    seconds of every round (``{name: [seconds, ...]}``); ``after_round(i)`` is
    called after each round.
    """
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    times = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
        if after_round is not None:
            after_round(round_)
    return {name: statistics.median(values) for name, values in times.items()}, times


def paired_ratio(times, numerator, denominator):
    """Median over rounds of ``times[denominator] / times[numerator]``.

    How many times faster ``numerator`` ran than ``denominator``, judged round
    by round: both ran minutes apart at most, under the same load.
    """
    return statistics.median(
        d / n for n, d in zip(times[numerator], times[denominator], strict=True)
    )


def median_time(function, repeats=3, warmup=1):
    """Median wall time of ``function()`` over ``repeats`` runs after warm-up."""
    return interleaved({"f": function}, rounds=repeats, warmup=warmup)[0]["f"]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags():
    """The CPU's vector and matrix extensions that decide CPU speeds."""
    try:
        with open("/proc/cpuinfo") as file:
            flags = next(line for line in file if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx", "fma", "f16c", "vnni", "amx", "bf16")
    return " ".join(f for f in flags if any(w in f for w in wanted)) or "none"


def row_cosines(a, b):
    """The cosine of each row of ``a`` with the same row of ``b``."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def proc_status(field):
    """A field of ``/proc/self/status`` in bytes (``VmRSS``, ``VmHWM``: Linux)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def load_average():
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def machine():
    """One line naming the machine, the software and the current load."""
    import torch
    import transformers

    return (
        f"{os.cpu_count()} CPU cores ({cpu_model()}; flags {cpu_flags()}), "
        f"torch {torch.__version__}, "
        f"transformers {transformers.__version__}, "
        f"{torch.get_num_threads()} intra-op threads, {load_average()}"
    )


def print_table(rows, columns):
    """Print ``rows`` (dicts of str) as an aligned, Markdown-compatible table."""
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in columns]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(
            "| " + " | ".join(row[c].ljust(w) for c, w in zip(columns, widths)) + " |"
        )
