"""The approximate index: faiss's HNSW graph over unit-length embeddings.

faiss-cpu was chosen over usearch after measuring both with the same graph
degree and construction breadth on the same data (``benchmarks/search_cpu.py``;
figures in ``docs/performance.md``): at the same recall@10, its build took
half the time and its queries a third. The graph is wrapped in an
``IndexIDMap2`` so that its ids are our row numbers (appended rows and
unreadable ones need no map of ours), and it pickles through
``faiss.serialize_index``.

The graph holds each distinct row once. Many identical vectors break an HNSW
graph (they are all each other's nearest neighbours, so its links stay among
them): faiss then returns fewer hits than asked (id -1) and misses true
neighbours of other queries. Copies of a row already in the graph are kept
aside, by the hash of their bytes, and returned with it.
"""

import hashlib

import numpy as np

from sklearn_clip._retrieval.search import tie_ordered

# "lancedb" keeps the collection on disk: see ``lance.py``.
APPROXIMATE_INDEXES = ("faiss", "lancedb")

# Graph degree and search breadths. A wider search finds more of the true
# neighbours, more slowly; 1024 reached recall@10 >= 0.95 on random unit
# vectors, the hardest case (real embeddings cluster, and need less).
DEFAULT_OPTIONS = {"connectivity": 32, "expansion_add": 128, "expansion_search": 1024}


def make_index(kind, dim, options=None):
    """A new, empty approximate index of the given kind."""
    if kind != "faiss":
        raise ValueError(f"unknown index {kind!r}; use 'exact' or 'faiss' here")
    return FaissIndex(dim, options)


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "index='faiss' needs the faiss-cpu package: "
            "pip install faiss-cpu, the package's 'ann' extra (or use index='exact')"
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
        self.first = {}  # hash of a row's bytes -> the key the graph holds for it
        self.copies = {}  # that key -> the keys of later rows with the same bytes
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

    def add(self, embeddings, start):
        """Add rows, keyed ``start``, ``start + 1``...; NaN rows are left out.

        A copy of a row added before is kept aside, not added to the graph.
        """
        keys = start + np.flatnonzero(~np.isnan(embeddings).any(axis=1))
        embeddings, new = embeddings[keys - start], []
        for position, (row, key) in enumerate(zip(embeddings, map(int, keys))):
            digest = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
            first = self.first.setdefault(digest, key)
            if first == key:
                new.append(position)
            else:
                self.copies.setdefault(first, []).append(key)
        if new:
            vectors = np.ascontiguousarray(embeddings[new], dtype=np.float32)
            self.index.add_with_ids(vectors, keys[new])

    def search(self, queries, k):
        """``(similarities, keys)``, each ``(m, k)``, ties ordered by key.

        Keys are ``-1`` (similarity ``-inf``) where the graph found fewer.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if len(queries) == 0:
            return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
        sims, keys = self.index.search(queries, k)
        sims, keys = sims.astype(np.float32), keys.astype(np.int64)
        sims[keys < 0] = -np.inf
        with_copies = np.isin(keys, list(self.copies)).any(axis=1)
        for query in np.flatnonzero(with_copies):
            sims[query], keys[query] = self._with_copies(sims[query], keys[query])
        return tie_ordered(sims, keys)

    def _with_copies(self, sims, keys):
        """One query's hits, each followed by its copies, the best ``k`` kept."""
        expanded = [[key, *self.copies.get(key, ())] for key in keys]
        all_keys = np.concatenate(expanded)
        all_sims = np.repeat(sims, [len(group) for group in expanded])
        best = np.lexsort((all_keys, -all_sims))[: len(keys)]
        return all_sims[best], all_keys[best]

    def neighbour_positions(self, embeddings, rows, k):
        """Approximate neighbours of every given row, as positions in ``rows``.

        ``-1`` where none was found.
        """
        positions = np.full(len(embeddings), -1, np.int64)
        positions[rows] = np.arange(len(rows))
        found = []
        for start in range(0, len(rows), 65536):
            block = rows[start : start + 65536]
            keys = self.search(embeddings[block], k)[1]
            found.append(np.where(keys >= 0, positions[keys], -1))
        return np.concatenate(found) if found else np.empty((0, k), np.int64)

    def __getstate__(self):
        data = _faiss().serialize_index(self.index)
        return {"dim": self.dim, "options": self.options, "data": data,
                "first": self.first, "copies": self.copies}  # fmt: skip

    def __setstate__(self, state):
        self.dim, self.options = state["dim"], state["options"]
        # Indexes pickled before copies were kept aside hold every row.
        self.first, self.copies = state.get("first", {}), state.get("copies", {})
        self._set_index(_faiss().deserialize_index(state["data"]))
