"""Image embedding throughput from JPEG files on CPU: sklearn-clip and its peers.

All contenders run in one process, on the same checkpoint (a ViT-B/32-shaped
CLIP with random weights, saved locally: the same compute as the released one),
the same 640x480 JPEG files and the same torch threads, interleaved round by
round; images per second are medians over the rounds:

- ``transformers.pipeline("zero-shot-image-classification")`` at its defaults
  (batch size 1, two candidate labels), timed on a slice of the files;
- a plain ``CLIPProcessor`` + ``get_image_features`` loop, batched;
- sentence-transformers' encoder (``SentenceTransformer(path).encode`` of PIL
  images opened from the files);
- ``CLIPEmbeddingTransformer`` at its defaults but for ``batch_size``;
- two model-only ceilings on ready pixel tensors: transformers'
  ``get_image_features`` on the model as ``from_pretrained`` gives it, and
  sklearn-clip's own forward pass (``sklearn_clip._backends.torch.forward``), which does
  less work for the same embeddings. Ours is judged against the second.

The peers load the checkpoint themselves, as their users would.

Batched contenders run at every ``--batch-sizes``; each is credited with its
best. A second table compares our decoding thread counts.

Usage: ``python benchmarks/embed_cpu.py [--n 256] [--rounds 5]
[--plot docs/images/embed_cpu.png]``.

``--families`` instead times every supported model family at one shape
(:data:`FAMILY_SHAPE`, random weights): ``CLIPEmbeddingTransformer`` against
the family's own image processor + ``get_image_features``, batched, on the
same JPEG files.
"""

import argparse
import warnings

import torch
from _common import (
    checkpoint,
    interleaved,
    jpeg_files,
    load_average,
    machine,
    paired_ratio,
    print_table,
)
from PIL import Image

from sklearn_clip import CLIPEmbeddingTransformer, load_model
from sklearn_clip._backends.torch.forward import image_features
from sklearn_clip._encoding import encode as _encode
from sklearn_clip._encoding.prefetch import default_workers

PIPELINE = "transformers pipeline (defaults)"
PLAIN = "CLIPProcessor + get_image_features loop"
ST = "sentence-transformers encode"
OURS = "sklearn-clip CLIPEmbeddingTransformer"
STOCK_CEILING = "model only: transformers get_image_features"
CEILING = "model only: sklearn-clip forward"


# One shape for every family: ViT towers of 224 px, 16-px patches, width 256,
# four layers (ALIGN's EfficientNet is the toy's, at 224 px).
FAMILY_SHAPE = {
    "image_size": 224,
    "patch_size": 16,
    "hidden_size": 256,
    "num_layers": 4,
    "num_heads": 4,
}


def family_rows(files, rounds, batch_size=32):
    """One row per family: our images/s and the family's own processor loop's."""
    from transformers import AutoImageProcessor, AutoModel

    from sklearn_clip.toy import FAMILIES, make_tiny_clip

    rows = []
    for family in FAMILIES:
        path = make_tiny_clip(family=family, **FAMILY_SHAPE)
        embedder = CLIPEmbeddingTransformer(path, batch_size=batch_size, device="cpu")
        embedder.fit(files[:1])
        model = AutoModel.from_pretrained(path).eval()
        processor = AutoImageProcessor.from_pretrained(path)

        def reference(files=files, model=model, processor=processor):
            with torch.inference_mode():
                for start in range(0, len(files), batch_size):
                    images = [
                        Image.open(f).convert("RGB")
                        for f in files[start : start + batch_size]
                    ]
                    model.get_image_features(**processor(images, return_tensors="pt"))

        embedder.transform(files[:8])  # warm-up on a few files
        reference(files[:8])
        runs = {"ours": lambda e=embedder: e.transform(files), "theirs": reference}
        seconds, times = interleaved(runs, rounds=rounds, warmup=0)
        handle = load_model(path, device="cpu")
        rows.append(
            {
                "family": family,
                "preprocessing": type(handle.image_config).__name__,
                "ours images/s": f"{len(files) / seconds['ours']:.1f}",
                "processor + get_image_features": (
                    f"{len(files) / seconds['theirs']:.1f}"
                ),
                "ours / theirs": f"{paired_ratio(times, 'ours', 'theirs'):.2f}x",
            }
        )
        print(rows[-1], flush=True)
    return rows


def report_load(round_):
    print(f"# round {round_ + 1} done; {load_average()}", flush=True)


def contenders(path, batch_sizes, n_pipeline):
    """``{(method, batch size): function(files)}``; the pipeline takes a slice."""
    from transformers import CLIPModel, CLIPProcessor, pipeline

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:  # an optional peer: left out where it is not installed
        SentenceTransformer = None

    handle = load_model(path, device="cpu")
    model = CLIPModel.from_pretrained(path).eval()
    processor = CLIPProcessor.from_pretrained(path)
    pipe = pipeline("zero-shot-image-classification", model=path, device="cpu")
    encoder = SentenceTransformer and SentenceTransformer(path, device="cpu")
    ready = torch.randn(max(batch_sizes), 3, 224, 224)

    def plain_loop(batch_size):
        def run(files):
            with torch.inference_mode():
                for start in range(0, len(files), batch_size):
                    images = [
                        Image.open(f).convert("RGB")
                        for f in files[start : start + batch_size]
                    ]
                    batch = processor(images=images, return_tensors="pt")
                    model.get_image_features(pixel_values=batch["pixel_values"])

        return run

    def sentence_transformers(batch_size):
        def run(files):
            encoder.encode([Image.open(f) for f in files], batch_size=batch_size)

        return run

    def ours(batch_size):
        embedder = CLIPEmbeddingTransformer(path, batch_size=batch_size, device="cpu")
        return lambda files: embedder.fit(files[:1]).transform(files)

    def model_only(forward):
        def at(batch_size):
            def run(files):
                with torch.inference_mode():
                    for start in range(0, len(files), batch_size):
                        forward(ready[: min(batch_size, len(files) - start)])

            return run

        return at

    def stock_forward(pixels):
        return model.get_image_features(pixel_values=pixels)

    def our_forward(pixels):
        return image_features(handle.model, pixels)

    def pipeline_defaults(files):
        pipe(files[:n_pipeline], candidate_labels=["a cat", "a dog"])

    runs = {(PIPELINE, 1): pipeline_defaults}
    peers = [(PLAIN, plain_loop)]
    if encoder:
        peers.append((ST, sentence_transformers))
    for name, factory in [
        *peers,
        (OURS, ours),
        (STOCK_CEILING, model_only(stock_forward)),
        (CEILING, model_only(our_forward)),
    ]:
        for batch_size in batch_sizes:
            runs[(name, batch_size)] = factory(batch_size)
    return runs, handle


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="JPEG files (640x480)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-sizes", default="16,32,64")
    parser.add_argument("--pipeline-images", type=int, default=48)
    parser.add_argument("--architecture", default="ViT-B/32")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--plot", default=None, help="save a bar chart here")
    parser.add_argument("--families", action="store_true", help="one row a family")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.families:
        files = jpeg_files(args.n)
        print(f"# {args.n} JPEGs of 640x480, shape {FAMILY_SHAPE}, random weights")
        print(f"# {machine()}; median of {args.rounds} interleaved rounds\n")
        rows = family_rows(files, args.rounds)
        columns = list(rows[0])
        print_table(rows, columns)
        print(f"\n# finished; {load_average()}")
        return
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    path = checkpoint(args.architecture)
    files = jpeg_files(args.n)
    runs, handle = contenders(path, batch_sizes, args.pipeline_images)
    print(f"# {args.n} JPEGs of 640x480, {args.architecture} shape, random weights")
    print(f"# {machine()}")
    print(
        f"# median of {args.rounds} interleaved rounds; pipeline timed on "
        f"{args.pipeline_images} of the files"
    )

    # Warm-up on a few files only: a full warm-up round would double the run.
    for run in runs.values():
        run(files[:8])
    timed = {key: (lambda run=run: run(files)) for key, run in runs.items()}
    seconds, times = interleaved(
        timed, rounds=args.rounds, warmup=0, after_round=report_load
    )
    pipeline_key = ("transformers pipeline (defaults)", 1)
    n_pipeline = min(args.pipeline_images, len(files))
    # The pipeline encodes a slice of the files: scale its times to all of them.
    times[pipeline_key] = [t * len(files) / n_pipeline for t in times[pipeline_key]]
    seconds[pipeline_key] *= len(files) / n_pipeline
    rates = {key: len(files) / s for key, s in seconds.items()}

    best = {}
    for (name, batch_size), rate in rates.items():
        if name not in best or rate > best[name][0]:
            best[name] = (rate, batch_size)
    ours_key = (OURS, best[OURS][1])
    rows = [
        {
            "method": name,
            "best batch": str(batch),
            "images/s": f"{rate:.2f}",
            "ms/image": f"{1000 / rate:.1f}",
            "ours / this": f"{paired_ratio(times, ours_key, (name, batch)):.2f}x",
        }
        for name, (rate, batch) in best.items()
    ]
    print("\n## Best batch size of each method (medians over rounds)\n")
    print_table(rows, ["method", "best batch", "images/s", "ms/image", "ours / this"])
    print(
        "\n'ours / this' is the median over rounds of the ratio within each round "
        "(a per-round pairing that cancels most of the machine's load changes)."
    )

    rows = [
        {
            "method": name,
            "batch": str(batch),
            "images/s": f"{rate:.2f}",
            "rounds (images/s)": " ".join(
                f"{len(files) / t:.2f}" for t in times[(name, batch)]
            ),
        }
        for (name, batch), rate in rates.items()
    ]
    print("\n## Every batch size\n")
    print_table(rows, ["method", "batch", "images/s", "rounds (images/s)"])

    if args.plot:
        title = f"{args.architecture} shape, {len(files)} JPEGs of 640x480"
        plot(best, args.plot, title)

    def versus(name):
        return paired_ratio(times, ours_key, (name, best[name][1]))

    # Against the faster batched peer.
    peer = min(versus(name) for name in (PLAIN, ST) if name in best)
    print(
        f"\nacceptance 1: ours / pipeline defaults = {versus(PIPELINE):.2f}x "
        f"(target >= 2); ours / best peer at its best batch = {peer:.2f}x "
        f"(target >= 1.1); ours / model-only ceiling = {versus(CEILING):.3f} "
        f"(target >= 0.9; against transformers' forward "
        f"{versus(STOCK_CEILING):.3f})"
    )

    # Decoding threads: on few cores they compete with torch's own threads.
    batch_size = best[OURS][1]
    threads = {
        f"{n} decoding thread(s)": (
            lambda n=n: _encode.encode_images(
                handle, files, batch_size=batch_size, n_workers=n
            )
        )
        for n in (1, 2, 4)
    }
    threads[CEILING] = timed[(CEILING, batch_size)]
    seconds, times = interleaved(
        threads, rounds=args.rounds, warmup=0, after_round=report_load
    )
    rows = [
        {
            "sklearn-clip": name,
            "images/s": f"{len(files) / s:.2f}",
            "of ceiling": f"{paired_ratio(times, name, CEILING):.3f}",
        }
        for name, s in seconds.items()
    ]
    print(
        f"\n## Decoding threads (batch {batch_size}; the default on this machine "
        f"is {default_workers()})\n"
    )
    print_table(rows, ["sklearn-clip", "images/s", "of ceiling"])
    print(f"\n# finished; {load_average()}")


def plot(best, path, title):
    """Horizontal bars of each method's best images per second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(best, key=lambda name: best[name][0])
    rates = [best[name][0] for name in names]
    figure, axes = plt.subplots(figsize=(8, 3.2))
    colours = ["tab:orange" if name == OURS else "tab:grey" for name in names]
    ceilings = (CEILING, STOCK_CEILING)
    colours = ["tab:blue" if n in ceilings else c for n, c in zip(names, colours)]
    bars = axes.barh(names, rates, color=colours)
    axes.bar_label(
        bars, [f"{r:.1f} (batch {best[n][1]})" for n, r in zip(names, rates)], padding=3
    )
    axes.set_xlabel("images per second (higher is better)")
    axes.set_xlim(0, max(rates) * 1.35)
    axes.set_title(f"Image embedding on CPU: {title}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"# plot saved to {path}")


if __name__ == "__main__":
    main()
