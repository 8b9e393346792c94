"""The approximate index: faiss's HNSW graph over unit-length embeddings.

faiss-cpu was chosen over usearch after measuring both with the same graph
degree and construction breadth on the same data (``benchmarks/search_cpu.py``;
figures in ``docs/performance.md``): at the same recall@10, its build took
half the time and its queries a third. The graph is wrapped in an
``IndexIDMap2`` so that its ids are our row numbers (appended rows and
unreadable ones need no map of ours), and it pickles through
``faiss.serialize_index``.
"""

import numpy as np

APPROXIMATE_INDEXES = ("faiss",)

# Graph degree and search breadths. A wider search finds more of the true
# neighbours, more slowly; 1024 reached recall@10 >= 0.95 on random unit
# vectors, the hardest case (real embeddings cluster, and need less).
DEFAULT_OPTIONS = {"connectivity": 32, "expansion_add": 128, "expansion_search": 1024}


def make_index(kind, dim, options=None):
    """A new, empty approximate index of the given kind."""
    if kind != "faiss":
        raise ValueError(f"unknown index {kind!r}; use 'exact' or 'faiss'")
    return FaissIndex(dim, options)


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "index='faiss' needs the faiss-cpu package: "
            "pip install 'sklearn-clip[ann]' (or use index='exact')"
        ) from exc
    return faiss


class FaissIndex:
    """Inner-product (cosine, on unit rows) HNSW search; ids are row numbers."""

    def __init__(self, dim, options=None):
        faiss = _faiss()
        unknown = set(options or {}) - set(DEFAULT_OPTIONS)
        if unknown:
            raise ValueError(
                f"unknown index_options {sorted(unknown)}; the options are "
                f"{sorted(DEFAULT_OPTIONS)}"
            )
        self.options = {**DEFAULT_OPTIONS, **(options or {})}
        self.dim = dim
        graph = faiss.IndexHNSWFlat(
            dim, self.options["connectivity"], faiss.METRIC_INNER_PRODUCT
        )
        graph.hnsw.efConstruction = self.options["expansion_add"]
        self._set_index(faiss.IndexIDMap2(graph))

    def _set_index(self, index):
        self.index = index
        faiss = _faiss()
        faiss.downcast_index(index.index).hnsw.efSearch = self.options[
            "expansion_search"
        ]

    def add(self, embeddings, keys):
        if len(keys):
            vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
            self.index.add_with_ids(vectors, np.asarray(keys, np.int64))

    def search(self, queries, k):
        """``(similarities, keys)``, each ``(m, k)``; ``-1`` keys where fewer found."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if len(queries) == 0:
            return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
        sims, keys = self.index.search(queries, k)
        sims = sims.astype(np.float32)
        sims[keys < 0] = -np.inf
        return sims, keys.astype(np.int64)

    def neighbours_of_all(self, embeddings, rows, k):
        """Approximate neighbours (keys) of every given row, in blocks."""
        found = []
        for start in range(0, len(rows), 65536):
            block = rows[start : start + 65536]
            found.append(self.search(embeddings[block], k)[1])
        return np.concatenate(found) if found else np.empty((0, k), np.int64)

    def __getstate__(self):
        data = _faiss().serialize_index(self.index)
        return {"dim": self.dim, "options": self.options, "data": data}

    def __setstate__(self, state):
        self.dim, self.options = state["dim"], state["options"]
        self._set_index(_faiss().deserialize_index(state["data"]))
