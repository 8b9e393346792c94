"""``sklearn-clip embed --output FOLDER/``: memory bounded by a shard; kill, resume.

1. Peak RSS of the command over 2,000 files, then over 20,000 (each run in a
   fresh process, read with ``os.wait4``): with memory bounded by the shard,
   the second stays within 1.25x of the first.
2. The 20,000-file run is started again into a new folder, killed with SIGKILL
   once a few shards are written, and rerun: the output must equal the
   uninterrupted run's, the shards kept from before the kill must not be
   rewritten, and the rerun must embed only the rows of the other shards (no
   file embedded twice).

The model is a small CLIP that takes 224-pixel images (random weights); the
files are small generated JPEGs, so the figures measure the command's own
memory rather than a large model's.

Usage: ``python benchmarks/embed_folder_memory.py [--small 2000] [--large 20000]
[--shard-size 1000]``.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import CACHE, cpu_model, load_average, small_checkpoint
from PIL import Image

from sklearn_clip._cli.shards import read_shards


def make_folder(n):
    """``n`` small generated JPEG files in a folder of their own (made once)."""
    folder = CACHE / f"folder-{n}"
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(n)
        for i in range(n):
            pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=85)
        done.touch()
    return folder


def command(model, folder, output, shard_size, batch_size):
    return [
        sys.executable,
        "-m",
        "sklearn_clip.cli",
        "embed",
        "--model",
        model,
        "--device",
        "cpu",
        "--images",
        str(folder),
        "--output",
        f"{output}{os.sep}",
        "--shard-size",
        str(shard_size),
        "--batch-size",
        str(batch_size),
    ]


def run(args, *, kill_after_shards=None):
    """Run the command; returns ``(exit status, peak RSS in MiB, stdout)``."""
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    if kill_after_shards is not None:
        output = Path(args[args.index("--output") + 1])
        while len(list(output.glob("shard-*.parquet"))) < kill_after_shards:
            if process.poll() is not None:
                raise RuntimeError("the run ended before it could be killed")
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024, stdout  # KiB on Linux


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--large", type=int, default=20_000)
    parser.add_argument("--shard-size", type=int, default=1_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--kill-after", type=int, default=3, help="shards")
    args = parser.parse_args()

    model = small_checkpoint()
    work = CACHE / "embed-folder-runs"
    shutil.rmtree(work, ignore_errors=True)
    print(f"# {cpu_model()}; {os.cpu_count()} cores; {load_average()}")

    peaks, seconds = {}, {}
    for n in (args.small, args.large):
        folder = make_folder(n)
        start = time.perf_counter()
        status, peak, _ = run(
            command(model, folder, work / f"full-{n}", args.shard_size, args.batch_size)
        )
        seconds[n] = time.perf_counter() - start
        assert status == 0, f"the run over {n} files failed ({status})"
        peaks[n] = peak
        print(
            f"{n} files: peak RSS {peak:.0f} MiB, {seconds[n]:.0f} s "
            f"({n / seconds[n]:.0f} files/s); {load_average()}",
            flush=True,
        )
    ratio = peaks[args.large] / peaks[args.small]
    print(
        f"peak RSS ratio {args.large} / {args.small} files: {ratio:.3f} "
        "(target <= 1.25)"
    )

    folder = make_folder(args.large)
    killed = work / "killed"
    line = command(model, folder, killed, args.shard_size, args.batch_size)
    status, _, _ = run(line, kill_after_shards=args.kill_after)
    kept = {p: p.stat().st_mtime_ns for p in killed.glob("shard-*.parquet")}
    leftovers = [p.name for p in killed.glob(".*tmp")]
    print(
        f"killed (exit status {status}) with {len(kept)} complete shards; "
        f"partial files left: {leftovers or 'none'}"
    )
    status, _, stdout = run(line)
    assert status == 0, f"the resumed run failed ({status})"
    embedded = int(re.search(r"embedded (\d+) rows", stdout).group(1))
    kept_rows = sum(len(pd.read_parquet(p)) for p in kept)
    untouched = all(p.stat().st_mtime_ns == t for p, t in kept.items())
    resumed, reference = read_shards(killed), read_shards(work / f"full-{args.large}")
    same = resumed.drop(columns="embedding").equals(
        reference.drop(columns="embedding")
    ) and np.array_equal(
        np.stack(resumed["embedding"].to_numpy()),
        np.stack(reference["embedding"].to_numpy()),
        equal_nan=True,
    )
    print(
        f"resumed: embedded {embedded} rows + {kept_rows} kept = "
        f"{embedded + kept_rows} of {args.large} (each row once: "
        f"{embedded + kept_rows == args.large and untouched}); kept shards "
        f"untouched: {untouched}; output equals the uninterrupted run's: {same}"
    )
    print(f"# finished; {load_average()}")


if __name__ == "__main__":
    main()
