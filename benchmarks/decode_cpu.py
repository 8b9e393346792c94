"""The image decoding pipeline alone (no model): how it scales with workers.

Times :func:`sklearn_clip._encoding.encode.iter_prepared_batches` (read, decode, resize
and crop 640x480 JPEG files to CLIP ViT-B/32's 224x224 input, in the pool of
decoding threads) and, in the same rounds, the same followed by the main
thread's share, :func:`sklearn_clip._backends.torch.tensors.normalize_batch`
(stacking and normalising each batch), for each worker count. Worker counts
are interleaved round by round; every round's time is printed with the load
average, since figures on a shared machine are noisy.

A profile of the main thread splits each run into time spent waiting for
decoded rows and time spent stacking: if waiting dominates, the pool is the
limit; if stacking does, the main thread is. A process pool would only help
where threads stop scaling while cores are idle (the GIL): the last contender
decodes the same files in a pool of processes of the largest worker count
(``prepare_image`` in each, arrays sent back by pickling), for comparison.

Usage: ``python benchmarks/decode_cpu.py [--n 512] [--rounds 5]
[--workers 1 2]``.
"""

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from functools import partial

from _common import (
    cpu_flags,
    cpu_model,
    interleaved,
    jpeg_files,
    load_average,
    paired_ratio,
    print_table,
)

from sklearn_clip._backends.torch.precision import cpu_bf16_units
from sklearn_clip._backends.torch.tensors import normalize_batch
from sklearn_clip._encoding.images import prepare_image
from sklearn_clip._encoding.prefetch import iter_prepared_batches, usable_cores
from sklearn_clip._encoding.preprocess import ImageConfig


def decode(files, config, n_workers, batch_size, stack=False, profile=None):
    """Run the pipeline over ``files``; optionally stack and profile."""
    waited = stacked = 0.0
    batches = iter_prepared_batches(
        files,
        None,
        config,
        batch_size=batch_size,
        on_error="raise",
        n_workers=n_workers,
    )
    with closing(batches):
        start = time.perf_counter()
        for _, arrays in batches:
            ready = time.perf_counter()
            waited += ready - start
            if stack:
                normalize_batch(arrays, config)
            start = time.perf_counter()
            stacked += start - ready
    if profile is not None:
        profile.append((waited, stacked))


def decode_in_processes(pool, files, config):
    """The same decoding in a pool of processes, batch by batch, in order."""
    for _ in pool.map(partial(prepare_image, config=config), files, chunksize=8):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    files = jpeg_files(args.n)
    config = ImageConfig()  # CLIP ViT-B/32: shortest edge 224, centre crop 224
    print(
        f"# {cpu_model()}; flags: {cpu_flags()}; torch bf16 units: "
        f"{cpu_bf16_units() or 'none'}; {usable_cores()} usable cores; "
        f"{len(files)} JPEGs of 640x480, batch {args.batch_size}; {load_average()}"
    )
    profiles = {}
    contenders = {}
    for n in args.workers:
        for stack in (False, True):
            name = f"{n} worker(s)" + (" + stacking" if stack else "")
            profiles[name] = []
            contenders[name] = lambda n=n, stack=stack, name=name: decode(
                files, config, n, args.batch_size, stack, profiles[name]
            )

    processes = max(args.workers)
    pool = ProcessPoolExecutor(processes)
    contenders[f"{processes} processes"] = lambda: decode_in_processes(
        pool, files, config
    )

    def report(round_):
        print(f"# round {round_ + 1} done; {load_average()}", flush=True)

    seconds, times = interleaved(
        contenders, rounds=args.rounds, warmup=1, after_round=report
    )
    base = {
        stack: f"{args.workers[0]} worker(s)" + stack for stack in ("", " + stacking")
    }
    rows = []
    for name, median in seconds.items():
        stack = " + stacking" if name.endswith("stacking") else ""
        waited, stacked = profiles.get(name, [(float("nan"),) * 2])[-1]
        rows.append(
            {
                "pipeline": name,
                "images/s": f"{len(files) / median:.1f}",
                "vs first": f"{paired_ratio(times, name, base[stack]):.2f}x",
                "rounds (s)": " ".join(f"{t:.2f}" for t in times[name]),
                "main thread waits / stacks (s)": f"{waited:.2f} / {stacked:.2f}",
            }
        )
    pool.shutdown()
    print()
    print_table(rows, list(rows[0]))
    print(f"\n# finished; {load_average()}")


if __name__ == "__main__":
    main()
