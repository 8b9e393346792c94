"""The on-disk embedding cache on CPU: a second transform of the same images.

``CLIPEmbeddingTransformer(cache_dir=...)`` on 640x480 JPEG files: the first
``transform`` encodes every image and stores it, the second reads them back
(hashing each file's bytes to find its entry). Each round starts from an empty
cache folder. The outputs of the two calls are compared exactly.

A second table measures what the cache costs when it misses, on a small model
where encoding is cheap (the worst case for the overhead): a transform with an
empty cache against a transform without a cache.

Usage: ``python benchmarks/cache_cpu.py [--n 1000] [--rounds 3]``.
"""

import argparse
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import (
    checkpoint,
    interleaved,
    jpeg_files,
    load_average,
    machine,
    print_table,
    small_checkpoint,
)

from sklearn_clip import CLIPEmbeddingTransformer


def first_and_second(path, files, folder, dtype, batch_size):
    """Seconds of a first and a second transform, and whether they agree."""
    shutil.rmtree(folder, ignore_errors=True)
    embedder = CLIPEmbeddingTransformer(
        path, batch_size=batch_size, cache_dir=folder, cache_dtype=dtype, device="cpu"
    ).fit(files[:1])
    start = time.perf_counter()
    first = embedder.transform(files)
    middle = time.perf_counter()
    second = embedder.transform(files)
    end = time.perf_counter()
    return middle - start, end - middle, bool(np.array_equal(first, second))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="JPEG files (640x480)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--architecture", default="ViT-B/32")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    path = checkpoint(args.architecture)
    files = jpeg_files(args.n)
    root = Path(tempfile.mkdtemp(prefix="sklearn-clip-cache-bench-"))
    print(f"# {args.n} JPEGs of 640x480, {args.architecture} shape, random weights")
    print(f"# {machine()}")
    try:
        rows = []
        for dtype in ("float32", "float16"):
            results = [
                first_and_second(path, files, root / dtype, dtype, args.batch_size)
                for _ in range(args.rounds if dtype == "float32" else 1)
            ]
            first = statistics.median(r[0] for r in results)
            second = statistics.median(r[1] for r in results)
            size = sum(f.stat().st_size for f in (root / dtype).rglob("*.npy"))
            rows.append(
                {
                    "cache_dtype": dtype,
                    "rounds": str(len(results)),
                    "first (s)": f"{first:.1f}",
                    "second (s)": f"{second:.3f}",
                    "speed-up": f"{first / second:.0f}x",
                    "identical": str(all(r[2] for r in results)),
                    "on disk": f"{size / 2**20:.1f} MiB",
                }
            )
        print(f"\n## Second transform of the same {args.n} images\n")
        print_table(rows, list(rows[0]))
        print(
            f"\nacceptance 3: second / first = {rows[0]['speed-up']} faster "
            f"(target >= 20x), identical outputs: {rows[0]['identical']}"
        )
        overhead(files, root, args.rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n# finished; {load_average()}")


def overhead(files, root, rounds):
    path = small_checkpoint()
    plain = CLIPEmbeddingTransformer(path, device="cpu").fit(files[:1])
    cached = CLIPEmbeddingTransformer(path, device="cpu", cache_dir=root / "small")
    cached.fit(files[:1])

    def cold():
        shutil.rmtree(root / "small", ignore_errors=True)
        cached.transform(files)

    seconds, _ = interleaved(
        {"no cache": lambda: plain.transform(files), "empty cache": cold}, rounds
    )
    rows = [
        {
            "small model (224 px, 64 wide)": name,
            "seconds": f"{s:.2f}",
            "vs no cache": f"{s / seconds['no cache']:.3f}",
        }
        for name, s in seconds.items()
    ]
    print(f"\n## Cost of an empty cache ({len(files)} images, median of {rounds})\n")
    print_table(rows, list(rows[0]))


if __name__ == "__main__":
    main()
