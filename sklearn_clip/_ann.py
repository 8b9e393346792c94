"""The approximate index: usearch's HNSW graph over unit-length embeddings.

usearch was chosen over faiss-cpu after measuring both on the same data
(``benchmarks/search_cpu.py``; figures in ``docs/performance.md``). It keeps
our row numbers as its keys (so appended rows need no id map), stores vectors
as float16 itself and serialises to bytes, which is how the index pickles.
"""

import os

import numpy as np

APPROXIMATE_INDEXES = ("usearch",)

# Graph degree and search breadth. A wider search finds more of the true
# neighbours, more slowly; these reach recall@10 >= 0.95 on the benchmark.
DEFAULT_OPTIONS = {"connectivity": 16, "expansion_add": 128, "expansion_search": 256}


def _threads():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0


def make_index(kind, dim, options=None):
    """A new, empty approximate index of the given kind."""
    if kind != "usearch":
        raise ValueError(f"unknown index {kind!r}; use 'exact' or 'usearch'")
    return UsearchIndex(dim, options)


class UsearchIndex:
    """Cosine HNSW search; keys are the collection's row numbers."""

    def __init__(self, dim, options=None):
        try:
            from usearch.index import Index
        except ImportError as exc:
            raise ImportError(
                "index='usearch' needs the usearch package: "
                "pip install 'sklearn-clip[ann]' (or use index='exact')"
            ) from exc
        unknown = set(options or {}) - set(DEFAULT_OPTIONS)
        if unknown:
            raise ValueError(
                f"unknown index_options {sorted(unknown)}; the options are "
                f"{sorted(DEFAULT_OPTIONS)}"
            )
        self.options = {**DEFAULT_OPTIONS, **(options or {})}
        self.dim = dim
        self.index = Index(ndim=dim, metric="cos", dtype="f16", **self.options)

    def add(self, embeddings, keys):
        if len(keys):
            vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
            self.index.add(np.asarray(keys, np.uint64), vectors, threads=_threads())

    def search(self, queries, k):
        """``(similarities, keys)``, each ``(m, k)``; ``-1`` keys where fewer found."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if len(queries) == 0:
            return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
        matches = self.index.search(queries, k, threads=_threads())
        keys = np.asarray(matches.keys, dtype=np.int64).reshape(len(queries), -1)
        sims = 1.0 - np.asarray(matches.distances, np.float32).reshape(keys.shape)
        counts = np.asarray(matches.counts).reshape(-1, 1)
        missing = np.arange(keys.shape[1]) >= counts
        keys[missing], sims[missing] = -1, -np.inf
        return sims, keys

    def neighbours_of_all(self, embeddings, rows, k):
        """Approximate neighbours (keys) of every given row, in blocks."""
        found = []
        for start in range(0, len(rows), 65536):
            block = rows[start : start + 65536]
            found.append(self.search(embeddings[block], k)[1])
        return np.concatenate(found) if found else np.empty((0, k), np.int64)

    def __getstate__(self):
        return {"dim": self.dim, "options": self.options, "data": self.index.save()}

    def __setstate__(self, state):
        self.__init__(state["dim"], state["options"])
        self.index = self.index.restore(state["data"])
        # The saved graph does not keep the search breadth; set it again.
        self.index.expansion_search = self.options["expansion_search"]
