"""Peak memory of ``find_duplicates`` when most pairs of rows pass the threshold.

The worst case for a duplicate search is a collection of near-copies: every
pair passes, so a search that kept its pairs would hold ``n * n / 2`` of
them (16 bytes each; 2 GB at 16,000 rows). ``find_duplicates`` merges each
block's pairs into its groups and drops them, so its memory should not grow
with the number of pairs.

Each size runs in a fresh subprocess: ``n`` x 512 float32 unit rows, all
within a small angle of one direction (every pair has cosine >= 0.98), in a
:class:`~sklearn_clip.CLIPNearestNeighbors` with ``modality="embedding"``;
``find_duplicates(0.9)`` must return one group of all rows. Reported: the
pairs that pass, seconds, and the peak resident memory during the call above
the resident memory before it (``VmHWM`` after resetting it through
``/proc/self/clear_refs``, minus ``VmRSS``: the embeddings are not counted),
beside the process's lifetime peak (``ru_maxrss``).

Usage: ``python benchmarks/duplicates_memory.py [--sizes 8000,16000]``.
Figures on a shared machine are noisy: the load average is printed with them.
"""

import argparse
import json
import resource
import subprocess
import sys

import numpy as np
from _common import cpu_flags, machine, print_table
from search_cpu import DIM, peak_above_now


def near_copies(n, seed=0):
    """``n`` unit rows within a small angle of one direction: every pair passes."""
    rng = np.random.default_rng(seed)
    rows = np.tile(rng.standard_normal(DIM, dtype=np.float32), (n, 1))
    rows /= np.linalg.norm(rows[0])
    noise = rng.standard_normal((n, DIM), dtype=np.float32)
    rows += 0.07 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def measure(n, threshold=0.9):
    from sklearn_clip import CLIPNearestNeighbors

    rows = near_copies(n)
    # Counted in blocks: the full similarity matrix alone would be n * n * 4 bytes.
    hits = sum(
        int((rows[i : i + 1000] @ rows.T >= threshold).sum()) for i in range(0, n, 1000)
    )
    passing = (hits - n) // 2
    searcher = CLIPNearestNeighbors(modality="embedding").fit(rows)
    del rows
    searcher.kneighbors(searcher.embeddings_[:1], 1)  # warm-up
    groups, seconds, peak = peak_above_now(lambda: searcher.find_duplicates(threshold))
    assert [len(g) for g in groups] == [n], "every row is a near-copy of the others"
    return {
        "rows": n,
        "passing_pairs": passing,
        "seconds": seconds,
        "peak_above_embeddings_mb": peak / 1e6,
        "process_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8000,16000")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    print(machine())
    print(f"CPU flags: {cpu_flags()}; the machine may be shared with other work")
    table = []
    for n in map(int, args.sizes.split(",")):
        result = subprocess.run(
            [sys.executable, __file__, "--child", str(n)],
            capture_output=True,
            text=True,
            check=True,
        )
        value = json.loads(result.stdout.strip().splitlines()[-1])
        table.append(
            {
                k: f"{v:.4g}" if isinstance(v, float) else str(v)
                for k, v in value.items()
            }
        )
    print_table(table, list(table[0]))


if __name__ == "__main__":
    main()
