"""Exact search, faiss-cpu and usearch on random unit vectors; memory; duplicates.

Three parts, each in a fresh subprocess so that its peak memory is its own:

- ``exact``: ``--n`` x 512 float16 random unit vectors (1,000,000 by default)
  in a :class:`~sklearn_clip.CLIPNearestNeighbors` with
  ``modality="embedding"``; 100 random queries, ``k=10``. It reports
  queries/s and the peak resident memory during the search above the
  resident memory before it (``VmHWM`` after resetting it through
  ``/proc/self/clear_refs``, minus ``VmRSS``), so the embeddings themselves
  are not counted.
- ``ann``: ``--ann-n`` rows; faiss ``IndexHNSWFlat`` and usearch ``Index``
  with the same graph degree and construction breadth, build time, then
  recall@10 against exact search and queries/s at several search breadths.
- ``duplicates``: ``--dup-n`` random rows, of which 1,000 are replaced by
  noisy copies (cosine >= 0.95 with their original, by construction) of other
  rows; ``find_duplicates(0.95)`` with the exact index must return exactly
  the 1,000 planted pairs, and its time and peak memory are reported.

Random unit vectors are the hardest case for graph indexes: in 512
dimensions a query's ten nearest rows are barely nearer than the rest, so
recall at a given speed is lower than on real embeddings, which cluster.

Usage: ``python benchmarks/search_cpu.py [--n 1000000] [--ann-n 20000]
[--dup-n 50000] [--parts exact,ann,duplicates]``. Figures on a shared
machine are noisy: the load average is printed with them.
"""

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from _common import machine, print_table, proc_status

DIM = 512


def unit_rows(n, seed, dtype=np.float16, chunk=100_000):
    """Random unit rows, made a chunk at a time so float32 never holds all."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype)
    for start in range(0, n, chunk):
        rows = rng.standard_normal((min(chunk, n - start), DIM), dtype=np.float32)
        out[start : start + len(rows)] = rows / np.linalg.norm(rows, axis=1)[:, None]
    return out


def peak_above_now(function):
    """Run ``function``; its result, seconds and peak RSS above the RSS before."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM to the current RSS
    before = proc_status("VmRSS")
    start = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - start
    return result, seconds, proc_status("VmHWM") - before


def exact_part(n):
    from sklearn_clip import CLIPNearestNeighbors

    collection = unit_rows(n, seed=0)
    queries = unit_rows(100, seed=1, dtype=np.float32)
    searcher = CLIPNearestNeighbors(modality="embedding", embedding_dtype="float16")
    searcher.fit(collection)
    del collection
    searcher.kneighbors(queries[:2], 10)  # warm-up: the search tensor is built
    _, seconds, peak = peak_above_now(lambda: searcher.kneighbors(queries, 10))
    return {
        "rows": n,
        "embeddings_gb": searcher.embeddings_.nbytes / 1e9,
        "seconds": seconds,
        "queries_per_s": 100 / seconds,
        "peak_above_embeddings_gb": peak / 1e9,
    }


def _recall(found, exact):
    return float(
        np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(found, exact)])
    )


def ann_part(n, connectivity=32, expansion_add=128, breadths=(64, 256, 1024)):
    import faiss
    import torch
    from usearch.index import Index

    from sklearn_clip._retrieval.search import top_k

    collection = unit_rows(n, seed=0, dtype=np.float32)
    queries = unit_rows(100, seed=1, dtype=np.float32)
    start = time.perf_counter()
    _, exact = top_k(torch.from_numpy(collection), queries, 10)
    rows = [
        {
            "index": "exact",
            "build_s": 0.0,
            "breadth": "-",
            "recall@10": 1.0,
            "queries_per_s": 100 / (time.perf_counter() - start),
        }
    ]

    threads = torch.get_num_threads()
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(DIM, connectivity, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = expansion_add
    start = time.perf_counter()
    index.add(collection)
    build = time.perf_counter() - start
    for breadth in breadths:
        index.hnsw.efSearch = breadth
        start = time.perf_counter()
        _, found = index.search(queries, 10)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "index": "faiss HNSWFlat (f32)",
                "build_s": build,
                "breadth": breadth,
                "recall@10": _recall(found, exact),
                "queries_per_s": 100 / seconds,
            }
        )

    index = Index(
        ndim=DIM,
        metric="cos",
        dtype="f16",
        connectivity=connectivity,
        expansion_add=expansion_add,
    )
    start = time.perf_counter()
    index.add(np.arange(n), collection, threads=threads)
    build = time.perf_counter() - start
    for breadth in breadths:
        index.expansion_search = breadth
        start = time.perf_counter()
        found = index.search(queries, 10, threads=threads).keys
        seconds = time.perf_counter() - start
        rows.append(
            {
                "index": "usearch HNSW (f16)",
                "build_s": build,
                "breadth": breadth,
                "recall@10": _recall(found, exact),
                "queries_per_s": 100 / seconds,
            }
        )
    return rows


def duplicates_part(n, n_planted=1000, threshold=0.95):
    from sklearn_clip import CLIPNearestNeighbors

    rng = np.random.default_rng(2)
    collection = unit_rows(n, seed=0)
    originals = rng.choice(n, n_planted, replace=False)
    others = np.setdiff1d(np.arange(n), originals)
    copies = rng.choice(others, n_planted, replace=False)
    # Noise of norm 0.3 orthogonal-ish to the row: cosine ~ 1 / sqrt(1.09) = 0.958.
    noise = rng.standard_normal((n_planted, DIM)).astype(np.float32)
    noise *= 0.3 / np.linalg.norm(noise, axis=1, keepdims=True)
    moved = collection[originals].astype(np.float32) + noise
    collection[copies] = moved / np.linalg.norm(moved, axis=1, keepdims=True)
    cosines = np.sum(collection[copies].astype(np.float32) * collection[originals], 1)
    searcher = CLIPNearestNeighbors(modality="embedding", embedding_dtype="float16")
    searcher.fit(collection)
    del collection
    searcher.kneighbors(searcher.embeddings_[:1].astype(np.float32), 1)  # warm-up
    groups, seconds, peak = peak_above_now(lambda: searcher.find_duplicates(threshold))
    planted = {tuple(sorted(p)) for p in zip(originals.tolist(), copies.tolist())}
    found = {tuple(g.tolist()) for g in groups}
    return {
        "rows": n,
        "planted": n_planted,
        "planted_min_cosine": float(cosines.min()),
        "groups_found": len(groups),
        "planted_found": len(planted & found),
        "other_groups": len(found - planted),
        "seconds": seconds,
        "peak_above_embeddings_gb": peak / 1e9,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--ann-n", type=int, default=20_000)
    parser.add_argument("--dup-n", type=int, default=50_000)
    parser.add_argument("--parts", default="exact,ann,duplicates")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    parts = {
        "exact": (exact_part, args.n),
        "ann": (ann_part, args.ann_n),
        "duplicates": (duplicates_part, args.dup_n),
    }
    if args.child:
        function, size = parts[args.child]
        print(json.dumps(function(size)))
        return
    print(machine())
    for part in args.parts.split(","):
        result = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--child", part],
            capture_output=True,
            text=True,
            check=True,
        )
        value = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"\n## {part}  ({machine().rsplit(', ', 1)[-1]})")
        rows = value if isinstance(value, list) else [value]
        table = [
            {k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in r.items()}
            for r in rows
        ]
        print_table(table, list(table[0]))


if __name__ == "__main__":
    main()
