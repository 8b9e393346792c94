"""Peak memory of embedding 500 and 5,000 images: it must not grow with the rows.

Each size runs in a fresh subprocess, which loads the model, then embeds the
rows (640x480 JPEG files, cycled when there are fewer files than rows) with
``CLIPEmbeddingTransformer``. It reports the process's peak resident memory
(``ru_maxrss``) and the peak sampled during ``transform`` (psutil, every 5 ms)
above the resident memory just before it. Decoded images alone would take
``rows * 224 * 224 * 3`` bytes if they were all held at once.

Usage: ``python benchmarks/memory.py [--sizes 500,5000] [--model small]``.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
import warnings

from _common import checkpoint, jpeg_files, machine, print_table, small_checkpoint


def child(rows, model, files, batch_size):
    """Embed ``rows`` images in this process; print a JSON line of memory."""
    import psutil

    from sklearn_clip import CLIPEmbeddingTransformer

    warnings.filterwarnings("ignore")
    paths = jpeg_files(files)
    X = [paths[i % len(paths)] for i in range(rows)]
    path = small_checkpoint() if model == "small" else checkpoint(model)
    embedder = CLIPEmbeddingTransformer(path, batch_size=batch_size, device="cpu")
    embedder.fit(X[:1])
    embedder.transform(X[:batch_size])  # warm-up: allocator pools, threads
    process = psutil.Process()
    before = process.memory_info().rss
    peak, done = [before], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    out = embedder.transform(X)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(
        json.dumps(
            {
                "rows": rows,
                "before": before,
                "added": peak[0] - before,
                "maxrss": maxrss,
                "output": out.nbytes,
                "seconds": seconds,
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,5000")
    parser.add_argument("--model", default="small", help="'small' or e.g. ViT-B/32")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args.child, args.model, args.files, args.batch_size)
    jpeg_files(args.files)
    print(f"# model {args.model!r}; {args.files} distinct 640x480 JPEG files, cycled")
    print(f"# {machine()}")
    results = []
    for rows in [int(s) for s in args.sizes.split(",")]:
        command = [sys.executable, __file__, "--child", str(rows)]
        command += ["--model", args.model, "--files", str(args.files)]
        command += ["--batch-size", str(args.batch_size)]
        done = subprocess.run(
            command, capture_output=True, text=True, check=True, env=os.environ
        )
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    mib = 2**20
    rows = [
        {
            "rows": str(r["rows"]),
            "peak RSS (MiB)": f"{r['maxrss'] / mib:.0f}",
            "RSS before transform": f"{r['before'] / mib:.0f}",
            "peak added by transform": f"{r['added'] / mib:.1f}",
            "of which output": f"{r['output'] / mib:.1f}",
            "all decoded images would be": f"{r['rows'] * 224 * 224 * 3 / mib:.0f}",
            "seconds": f"{r['seconds']:.1f}",
        }
        for r in results
    ]
    print()
    print_table(rows, list(rows[0]))
    ratio = results[-1]["maxrss"] / results[0]["maxrss"]
    print(
        f"\nacceptance 4: peak RSS {results[-1]['rows']} rows / "
        f"{results[0]['rows']} rows = {ratio:.3f} (target <= 1.25)"
    )


if __name__ == "__main__":
    main()
