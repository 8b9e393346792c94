"""What each backend buys on a CPU: PyTorch, ONNX Runtime, OpenVINO; float32, int8.

One table, every contender in one process, interleaved round by round, from
the same 640x480 JPEG files through ``CLIPEmbeddingTransformer`` (decoding,
resizing and batching included, as users run it), on a ViT-B/32-shaped CLIP
with random weights:

- ``torch float32`` and ``torch auto`` (bfloat16 where the CPU has native
  bfloat16 units, else float32: see ``dtype="auto"``);
- ``onnx float32``, ``onnx int8`` (ONNX Runtime; dynamic quantization);
- ``openvino float32``, ``openvino int8`` (NNCF weight compression).

Columns: images per second, the speed-up over ``torch float32`` (paired
round by round), the smallest cosine of each image embedding to the float32
one, and the top-1 agreement with float32 zero-shot predictions of the docs'
trained demo model on 1,200 held-out generated images (exported the same
way). The CPU's model and flags, the libraries' versions and the load are
printed first, and the fastest contender is named last: what ``backend=``
to choose on this CPU.

Exports are written once under the benchmark cache and reused.

Usage: ``python benchmarks/backends_cpu.py [--n 128] [--rounds 3]``.
"""

import argparse
from importlib import metadata

import numpy as np
from _common import (
    CACHE,
    checkpoint,
    interleaved,
    jpeg_files,
    machine,
    paired_ratio,
    print_table,
)

from sklearn_clip import CLIPEmbeddingTransformer, CLIPZeroShotClassifier, export_model
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


def _cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def speed(files, rounds, batch_size):
    """Images/s and cosines of every contender on the ViT-B/32-shaped model."""
    source = checkpoint("ViT-B/32")
    embedders = {
        name: CLIPEmbeddingTransformer(
            model_for(source, name), dtype=_dtype(name), batch_size=batch_size
        ).fit(files[:1])
        for name in CONTENDERS
    }
    outputs = {name: e.transform(files) for name, e in embedders.items()}
    runs = {name: (lambda e=e: e.transform(files)) for name, e in embedders.items()}
    seconds, times = interleaved(runs, rounds=rounds, warmup=0)
    reference = outputs["torch float32"]
    return {
        name: {
            "runs at": embedders[name].dtype_,
            "images/s": len(files) / seconds[name],
            "vs torch float32": paired_ratio(times, name, "torch float32"),
            "min cosine": _cosines(outputs[name], reference).min(),
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="JPEG files")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
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
    fastest = max(figures, key=lambda name: figures[name]["images/s"])
    print(
        f"fastest on this CPU: {fastest} ({figures[fastest]['images/s']:.1f} images/s)"
    )
    exact = [n for n in figures if n.endswith("float32") and n != "torch float32"]
    best_exact = max(exact, key=lambda name: figures[name]["images/s"])
    print(f"fastest with float32 answers: {best_exact}")


if __name__ == "__main__":
    main()
