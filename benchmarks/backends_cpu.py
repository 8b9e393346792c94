"""What each backend buys on a CPU: PyTorch, ONNX Runtime, OpenVINO; float32, int8.

One table, every contender in one run of this script, interleaved round by
round, each timed in a process of its own (as a deployment runs one runtime:
two runtimes' thread pools in one process slow each other), from the same
640x480 JPEG files through ``CLIPEmbeddingTransformer`` (decoding, resizing
and batching included, as users run it), on a ViT-B/32-shaped CLIP with
random weights:

- ``torch float32`` and ``torch auto`` (bfloat16 where the CPU has native
  bfloat16 units, else float32: see ``dtype="auto"``);
- ``onnx float32``, ``onnx int8`` (ONNX Runtime; dynamic quantization,
  7-bit weights per output channel);
- ``openvino float32``, ``openvino int8`` (NNCF weight compression).

Columns: images per second, the speed-up over ``torch float32`` (paired
round by round), the smallest cosine of each image embedding to the float32
one, and the top-1 agreement with float32 zero-shot predictions of the docs'
trained demo model on 1,200 held-out generated images (exported the same
way). The CPU's model and flags, the libraries' versions and the load are
printed first, and the fastest contender is named last: what ``backend=``
to choose on this CPU.

Exports are written once under the benchmark cache and reused.

Usage: ``python benchmarks/backends_cpu.py [--n 128] [--rounds 3]
[--plot docs/images/backends_cpu.png]``.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
from _common import (
    CACHE,
    checkpoint,
    jpeg_files,
    machine,
    paired_ratio,
    print_table,
    row_cosines,
)

from sklearn_clip import CLIPZeroShotClassifier, export_model
from sklearn_clip.datasets import make_shapes
from sklearn_clip.demo import HELD_OUT, IMAGE_SIZE, trained_model

CONTENDERS = {
    "torch float32": ("torch", "float32"),
    "torch auto": ("torch", "auto"),
    "onnx float32": ("onnx", None),
    "onnx int8": ("onnx", "int8"),
    "openvino float32": ("openvino", None),
    "openvino int8": ("openvino", "int8"),
}


def model_for(source, name):
    """The ``model=`` of a contender: the checkpoint, or its export (made once)."""
    backend, option = CONTENDERS[name]
    source = Path(source)
    if backend == "torch":
        return str(source)
    target = CACHE / "exports" / f"{source.name}-{backend}-{option or 'float32'}"
    if not (target / "sklearn_clip_export.json").exists():
        print(f"exporting {source.name} for {name} ...", flush=True)
        export_model(source, target, backend=backend, quantize=option, overwrite=True)
    return str(target)


def _dtype(name):
    backend, option = CONTENDERS[name]
    return option if backend == "torch" else "auto"


# One timed run of a contender, in a process of its own: a deployment runs one
# runtime, and two runtimes' thread pools in one process slow each other
# (PyTorch's and ONNX Runtime's threads spin a while after each call).
TIMED_RUN = """
import sys, time, numpy as np
from sklearn_clip import CLIPEmbeddingTransformer
model, dtype, batch_size, out, *files = sys.argv[1:]
embedder = CLIPEmbeddingTransformer(model, dtype=dtype, batch_size=int(batch_size))
embedder.fit(files[:1]).transform(files[: int(batch_size)])  # warm-up
start = time.perf_counter()
embeddings = embedder.transform(files)
print(time.perf_counter() - start, embedder.dtype_)
np.save(out, embeddings)
"""


def _timed_run(model, dtype, batch_size, files):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "embeddings.npy"
        argv = [model, dtype, str(batch_size), str(out), *files]
        done = subprocess.run(
            [sys.executable, "-c", TIMED_RUN, *argv],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds, runs_at = done.stdout.split()[-2:]
        return float(seconds), runs_at, np.load(out)


def speed(files, rounds, batch_size):
    """Images/s and cosines of every contender on the ViT-B/32-shaped model,
    each run in its own process, the contenders rotated round by round."""
    source = checkpoint("ViT-B/32")
    models = {name: model_for(source, name) for name in CONTENDERS}
    names = list(CONTENDERS)
    times, runs_at, outputs = {name: [] for name in names}, {}, {}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            seconds, runs_at[name], outputs[name] = _timed_run(
                models[name], _dtype(name), batch_size, files
            )
            times[name].append(seconds)
    reference = outputs["torch float32"]
    return {
        name: {
            "runs at": runs_at[name],
            "images/s": len(files) / statistics.median(times[name]),
            "vs torch float32": paired_ratio(times, name, "torch float32"),
            "min cosine": row_cosines(outputs[name], reference).min(),
        }
        for name in CONTENDERS
    }


def agreement():
    """Top-1 agreement with float32 of each contender, on the demo's model."""
    source = trained_model(n_train=4000, max_epochs=20)
    test = make_shapes(
        1200, image_size=IMAGE_SIZE, holdout_combinations=HELD_OUT, random_state=202
    )
    labels = sorted(set(np.char.add(np.char.add(test.color, " "), test.shape)))
    predictions = {
        name: CLIPZeroShotClassifier(
            model_for(source, name),
            candidate_labels=labels,
            templates=["a {}", "a picture of a {}"],
            dtype=_dtype(name),
        )
        .fit(None)
        .predict(test.images)
        for name in CONTENDERS
    }
    reference = predictions["torch float32"]
    return {name: np.mean(p == reference) for name, p in predictions.items()}


def plot(rows, path):
    """One bar per contender: its speed-up, labelled with its agreement."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["contender"] for row in rows][::-1]
    speedups = [float(row["vs torch float32"].rstrip("x")) for row in rows][::-1]
    colours = ["C1" if "int8" in name else "C0" for name in names]
    figure, axes = plt.subplots(figsize=(6.4, 3.4), layout="constrained")
    bars = axes.barh(names, speedups, color=colours)
    labels = [f"agreement {row['top-1 agreement']}" for row in rows][::-1]
    axes.bar_label(bars, labels=labels, padding=4, fontsize=9)
    axes.axvline(1.0, color="grey", linewidth=0.8)
    axes.set_xlim(0, max(speedups) * 1.45)
    axes.set_xlabel("images/s from JPEG files, times PyTorch float32")
    axes.set_title("ViT-B/32 shapes on this CPU (orange: int8)")
    figure.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="JPEG files")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--plot", help="write the figure here (e.g. a .png)")
    args = parser.parse_args()
    print(machine())
    versions = ("torch", "onnxruntime", "openvino", "nncf")
    print(", ".join(f"{p} {metadata.version(p)}" for p in versions))
    agreeing = agreement()
    figures = speed(jpeg_files(args.n), args.rounds, args.batch_size)
    rows = [
        {
            "contender": name,
            "runs at": row["runs at"],
            "images/s": f"{row['images/s']:.1f}",
            "vs torch float32": f"{row['vs torch float32']:.2f}x",
            "min cosine to float32": f"{row['min cosine']:.4f}",
            "top-1 agreement": f"{agreeing[name]:.3f}",
        }
        for name, row in figures.items()
    ]
    print_table(rows, list(rows[0]))
    if args.plot:
        plot(rows, args.plot)
    fastest = max(figures, key=lambda name: figures[name]["images/s"])
    print(
        f"fastest on this CPU: {fastest} ({figures[fastest]['images/s']:.1f} images/s)"
    )
    exact = [n for n in figures if n.endswith("float32") and n != "torch float32"]
    best_exact = max(exact, key=lambda name: figures[name]["images/s"])
    print(f"fastest with float32 answers: {best_exact}")


if __name__ == "__main__":
    main()
