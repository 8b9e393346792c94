"""What ``dtype="auto"`` buys on this CPU, for inference and for fine-tuning.

Two tables, every contender in one process, interleaved round by round:

1. **Inference from JPEG files** (a ViT-B/32-shaped CLIP with random weights,
   640x480 JPEGs): ``CLIPEmbeddingTransformer`` with ``dtype="float32"``
   against ``dtype="auto"`` and ``dtype="bfloat16"``; images per second, the
   speed-up over float32 and the smallest cosine to the float32 embeddings.
2. **Fine-tuning** (``CLIPContrastiveFinetuner``, one epoch): float32 training
   against bfloat16 autocast (``dtype="bfloat16"``) for the demo's model and
   for 224-pixel models of growing width, with what ``"auto"`` picks for each.
   These rows are the evidence behind
   :data:`sklearn_clip._backends.torch.precision.CPU_BF16_TRAINING_MIN_WIDTH`.

The CPU's model, its bfloat16 units as torch reports them and the load are
printed first: the figures mean nothing without them. Set
``SKLEARN_CLIP_CPU_BF16=native`` to see what ``"auto"`` picks on a CPU with
such units (the speed is still this CPU's).

Usage: ``python benchmarks/precision_cpu.py [--n 128] [--rounds 3]
[--widths 64,256,512,768] [--pairs 256]``.
"""

import argparse
import tempfile

import torch
from _common import (
    checkpoint,
    interleaved,
    jpeg_files,
    machine,
    paired_ratio,
    print_table,
    row_cosines,
)

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPEmbeddingTransformer,
    load_model,
)
from sklearn_clip._backends.torch.precision import (
    cpu_bf16_units,
    model_width,
    training_autocast_dtype,
)
from sklearn_clip.datasets import make_shapes
from sklearn_clip.demo import IMAGE_SIZE, MODEL_OPTIONS, TRAINING_OPTIONS
from sklearn_clip.toy import make_tiny_clip

CPU = torch.device("cpu")


def inference_rows(files, rounds, batch_size=32):
    path = checkpoint("ViT-B/32")
    embedders = {
        dtype: CLIPEmbeddingTransformer(
            path, device="cpu", dtype=dtype, batch_size=batch_size
        ).fit(files[:1])
        for dtype in ("float32", "auto", "bfloat16")
    }
    outputs = {dtype: e.transform(files) for dtype, e in embedders.items()}
    runs = {dtype: (lambda e=e: e.transform(files)) for dtype, e in embedders.items()}
    seconds, times = interleaved(runs, rounds=rounds, warmup=0)
    return [
        {
            "dtype": dtype,
            "runs at": embedders[dtype].dtype_,
            "images/s": f"{len(files) / seconds[dtype]:.1f}",
            "vs float32": f"{paired_ratio(times, dtype, 'float32'):.2f}x",
            "min cosine to float32": (
                f"{row_cosines(outputs[dtype], outputs['float32']).min():.6f}"
            ),
        }
        for dtype in runs
    ]


def _fit_seconds(path, data, options, rounds):
    """Median seconds of one training epoch, float32 against bfloat16 autocast."""
    tuners = {
        dtype: CLIPContrastiveFinetuner(path, device="cpu", dtype=dtype, **options)
        for dtype in ("float32", "bfloat16")
    }
    runs = {
        dtype: (lambda t=t: t.fit(data.images, data.captions))
        for dtype, t in tuners.items()
    }
    return interleaved(runs, rounds=rounds, warmup=1)


def training_rows(widths, n_pairs, rounds):
    one_epoch = {"max_epochs": 1, "validation_fraction": None, "random_state": 0}
    shapes = [
        (
            "demo model",
            make_tiny_clip(tempfile.mkdtemp(), **MODEL_OPTIONS),
            make_shapes(n_pairs, image_size=IMAGE_SIZE, random_state=0),
            TRAINING_OPTIONS,
        )
    ]
    for width in widths:
        path = make_tiny_clip(
            tempfile.mkdtemp(),
            image_size=224,
            patch_size=32,
            hidden_size=width,
            num_layers=2,
            num_heads=max(1, width // 64),
        )
        data = make_shapes(n_pairs, image_size=224, random_state=0)
        shapes.append((f"224 px, width {width}", path, data, {"batch_size": 32}))
    rows = []
    for name, path, data, options in shapes:
        # Each contender sets its own dtype.
        options = {k: v for k, v in {**options, **one_epoch}.items() if k != "dtype"}
        seconds, times = _fit_seconds(path, data, options, rounds)
        model = load_model(path, device="cpu", dtype="float32").model
        auto = training_autocast_dtype(CPU, "auto", model)
        rows.append(
            {
                "model": name,
                "width": str(model_width(model)),
                "float32 s/epoch": f"{seconds['float32']:.2f}",
                "bf16 autocast s/epoch": f"{seconds['bfloat16']:.2f}",
                "bf16 speed-up": f"{paired_ratio(times, 'bfloat16', 'float32'):.2f}x",
                '"auto" trains in': "bfloat16" if auto else "float32",
            }
        )
        print(rows[-1], flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="JPEG files (640x480)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--widths", default="64,256,512,768")
    parser.add_argument("--pairs", type=int, default=256, help="training pairs")
    parser.add_argument("--skip-inference", action="store_true")
    args = parser.parse_args()
    print(machine())
    units = ", ".join(cpu_bf16_units()) or "none"
    print(f"bfloat16 units seen: {units}")
    if not args.skip_inference:
        files = jpeg_files(args.n)
        print_table(
            inference_rows(files, args.rounds),
            ["dtype", "runs at", "images/s", "vs float32", "min cosine to float32"],
        )
    widths = [int(w) for w in args.widths.split(",") if w]
    print_table(
        training_rows(widths, args.pairs, args.rounds),
        [
            "model",
            "width",
            "float32 s/epoch",
            "bf16 autocast s/epoch",
            "bf16 speed-up",
            '"auto" trains in',
        ],
    )
    print(machine())


if __name__ == "__main__":
    main()
