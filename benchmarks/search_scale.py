"""Search over a million embeddings: exact (ours), faiss IVF, LanceDB IVF-PQ re-ranked.

``--n`` rows (1,000,000 by default) of 512 float32 dimensions, clustered like
CLIP embeddings (a direction every row shares, 2,000 clusters, noise within
each; real CLIP image embeddings have a mean cosine near 0.5 between
unrelated images and form such clusters), and ``--queries`` queries drawn
from the same clusters. Each contender runs in a subprocess of its own, so
that its resident memory is its own:

- ``exact``: :class:`~sklearn_clip.CLIPNearestNeighbors` with
  ``modality="embedding"`` (blocked matrix products over every row, in
  memory). Its answers are the truth the others' recall@10 is measured
  against.
- ``faiss IVF``: faiss ``IndexIVFFlat`` (inner product, ``--nlist`` lists,
  trained on 100,000 rows, ``--nprobe`` lists per query), in memory; its
  on-disk size is that of ``faiss.write_index``.
- ``lancedb IVF-PQ``: ``CLIPNearestNeighbors(index="lancedb")`` built from
  the rows a chunk at a time (appended as they come), IVF-PQ at 32 bytes a
  row, re-ranked (``refine_factor``); then a *second* process opens the table
  with ``fit(None)`` (no embedding, no rows in memory) and answers the
  queries: its resident memory is the query process's.

Columns: build seconds, size on disk, peak resident memory of the process
(``VmHWM``: for LanceDB, of the query process), recall@10 against exact
search, queries/s (all queries in one call, after one warm-up query). The
float32 embeddings themselves take ``n * 512 * 4`` bytes (2.05 GB at 1M).

Usage: ``python benchmarks/search_scale.py [--n 1000000] [--queries 1000]
[--nlist 1024] [--nprobe 64] [--refine-factor 10]``. Data and tables are
written under ``$SKLEARN_CLIP_BENCH_DIR`` (``~/.cache/sklearn-clip-bench``).
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import CACHE, machine, print_table, proc_status

DIM = 512
K = 10


def _rows(n, seed, clusters):
    """``n`` unit rows: shared direction + one of the clusters + noise."""
    rng = np.random.default_rng(seed)
    common = clusters[0]  # every row leans the same way, as CLIP's do
    picked = rng.integers(1, len(clusters), n)
    noise = rng.standard_normal((n, DIM), dtype=np.float32) / np.sqrt(DIM)
    rows = 0.9 * common + clusters[picked] + 0.9 * noise
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def data(n, n_queries):
    """Paths of the collection and queries (``.npy``), written once."""
    folder = CACHE / f"search-scale-{n}"
    collection, queries = folder / "collection.npy", folder / "queries.npy"
    if not collection.exists():
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        clusters = rng.standard_normal((2001, DIM)).astype(np.float32) / np.sqrt(DIM)
        out = np.lib.format.open_memmap(
            folder / "tmp.npy", mode="w+", dtype=np.float32, shape=(n, DIM)
        )
        for start in range(0, n, 100_000):
            size = min(100_000, n - start)
            out[start : start + size] = _rows(size, 1 + start, clusters)
        out.flush()
        del out
        (folder / "tmp.npy").rename(collection)
        np.save(queries, _rows(n_queries, 10**9, clusters))
    return collection, queries


def _timed_queries(search, queries):
    search(queries[:1])  # warm-up
    start = time.perf_counter()
    found = search(queries)
    return found, len(queries) / (time.perf_counter() - start)


def _size(path):
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def exact_part(args, collection, queries):
    from sklearn_clip import CLIPNearestNeighbors

    start = time.perf_counter()
    searcher = CLIPNearestNeighbors(modality="embedding", n_neighbors=K)
    searcher.fit(np.load(collection, mmap_mode="r"))
    build = time.perf_counter() - start
    found, qps = _timed_queries(searcher.kneighbors, np.load(queries))
    np.save(Path(collection).with_name("truth.npy"), found[1])
    return {"build_s": build, "disk_gb": 0.0, "qps": qps, "recall": 1.0}


def faiss_part(args, collection, queries):
    import faiss

    rows = np.load(collection, mmap_mode="r")
    start = time.perf_counter()
    quantizer = faiss.IndexFlatIP(DIM)
    index = faiss.IndexIVFFlat(quantizer, DIM, args.nlist, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(len(rows), min(100_000, len(rows)))
    index.train(np.ascontiguousarray(rows[np.sort(sample)]))
    for first in range(0, len(rows), 100_000):
        index.add(np.ascontiguousarray(rows[first : first + 100_000]))
    build = time.perf_counter() - start
    del rows
    index.nprobe = args.nprobe
    found, qps = _timed_queries(lambda q: index.search(q, K)[1], np.load(queries))
    saved = Path(collection).with_name("faiss.index")
    faiss.write_index(index, str(saved))
    truth = np.load(Path(collection).with_name("truth.npy"))
    return {"build_s": build, "disk_gb": _size(saved) / 1e9, "qps": qps,
            "recall": _recall(found, truth)}  # fmt: skip


def _lance_options(args, collection):
    path = str(Path(collection).with_name("lancedb"))
    return {"path": path, "mode": "overwrite", "chunk_size": 100_000,
            "num_partitions": args.nlist, "nprobes": args.nprobe,
            "refine_factor": args.refine_factor[0]}  # fmt: skip


def lance_build_part(args, collection, queries):
    from sklearn_clip import CLIPNearestNeighbors

    options = _lance_options(args, collection)
    shutil.rmtree(options["path"], ignore_errors=True)
    start = time.perf_counter()
    searcher = CLIPNearestNeighbors(
        modality="embedding", index="lancedb", index_options=options
    )
    searcher.fit(np.load(collection, mmap_mode="r"))  # appended 100,000 at a time
    return {"build_s": time.perf_counter() - start,
            "disk_gb": _size(options["path"]) / 1e9}  # fmt: skip


def lance_query_part(args, collection, queries):
    """A second process: the table opened, nothing embedded, queries answered."""
    from sklearn_clip import CLIPNearestNeighbors

    options = _lance_options(args, collection)
    searcher = CLIPNearestNeighbors(
        modality="embedding", index="lancedb", index_options=options, n_neighbors=K
    ).fit(None)
    found, qps = _timed_queries(searcher.kneighbors, np.load(queries))
    return {"qps": qps, "found": found[1].tolist(), "rows": searcher.n_samples_fit_}


PARTS = {"exact": exact_part, "faiss": faiss_part, "lance_build": lance_build_part,
         "lance_query": lance_query_part}  # fmt: skip


def _child(part, argv, saved=None):
    """Run ``part`` in a process of its own; with ``saved``, reuse or save it."""
    if saved is not None and saved.exists():
        return json.loads(saved.read_text())
    done = subprocess.run(
        [sys.executable, __file__, *argv, "--child", part],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{part} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if saved is not None:
        saved.write_text(json.dumps(result))
    return result


def _recall(found, truth):
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth)]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--nprobe", type=int, default=64)
    parser.add_argument("--refine-factor", type=int, nargs="+", default=[50])
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the results of exact, faiss and the LanceDB build saved by an "
        "earlier run on the same data; the query process always runs again",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    collection, queries = data(args.n, args.queries)
    if args.child:
        result = PARTS[args.child](args, collection, queries)
        result["peak_rss_gb"] = proc_status("VmHWM") / 1e9
        print(json.dumps(result))
        return
    print(machine())
    argv = ["--n", str(args.n), "--queries", str(args.queries)]
    argv += ["--nlist", str(args.nlist), "--nprobe", str(args.nprobe)]
    saved = Path(collection).parent
    if not args.reuse:
        for old in saved.glob("result-*.json"):
            old.unlink()
    exact = _child("exact", argv, saved / "result-exact.json")
    truth = np.load(saved / "truth.npy")
    faiss_result = _child("faiss", argv, saved / "result-faiss.json")
    built = _child("lance_build", argv, saved / "result-lance_build.json")
    rows = [
        {"index": "exact (ours, in memory)", **exact},
        {"index": f"faiss IVFFlat nlist={args.nlist} nprobe={args.nprobe}",
         **faiss_result},
    ]  # fmt: skip
    for factor in args.refine_factor:
        query = _child("lance_query", [*argv, "--refine-factor", str(factor)])
        assert query["rows"] == args.n  # every row, from the stored table
        rows.append(
            {"index": f"lancedb IVF-PQ 32 B/row nlist={args.nlist} "
                      f"nprobes={args.nprobe} refine_factor={factor}",
             "build_s": built["build_s"], "disk_gb": built["disk_gb"],
             "peak_rss_gb": query["peak_rss_gb"], "qps": query["qps"],
             "recall": _recall(query["found"], truth)}
        )  # fmt: skip
    columns = ["index", "build_s", "disk_gb", "peak_rss_gb", "recall", "qps"]
    table = [
        {c: f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in columns}
        for r in rows
    ]
    print(f"\n{args.n} x {DIM} float32 = {args.n * DIM * 4 / 1e9:.3g} GB; "
          f"{args.queries} queries, recall@{K} against exact search; "
          f"peak RSS of lancedb = its query process (a second process)")  # fmt: skip
    print_table(table, columns)


if __name__ == "__main__":
    main()
