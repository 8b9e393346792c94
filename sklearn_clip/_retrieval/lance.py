"""Search on disk: a LanceDB table of embeddings, an IVF-PQ index, exact re-ranking.

``CLIPNearestNeighbors(index="lancedb")`` keeps its collection in a LanceDB
table (embedded: a folder, no server) rather than in memory: ``fit`` embeds
the rows a chunk at a time and appends each chunk to the table as it is
computed, so memory is bounded by a chunk; once the table holds enough rows
an IVF-PQ index (compressed codes, about ``dim / 16`` bytes a row) is built
over it. A query scans the codes of the ``nprobes`` nearest IVF lists, then
re-ranks ``refine_factor * k`` candidates by their exact float32 cosine
(LanceDB's ``refine_factor``), reading those rows from disk: a query process
holds the index, not the vectors. Rows appended after the index was built
are searched exactly until ``partial_fit`` folds them in (``optimize``).

The table is tagged (in its Arrow schema's metadata) with the identity of
the model that made its rows, the fingerprint of its weights, as the
``embed`` command's shard manifests are: a table is opened again by another
process (``fit(None)``, or an unpickled searcher) without embedding anything,
and refused when its rows come from other weights. Rows are ``row`` (the row
number, what ``kneighbors`` returns), ``path`` (the input, as a string) and
``vector``; rows that could not be read are not stored.
"""

import json

import numpy as np

from sklearn_clip._retrieval.search import tie_ordered

# Queries searched at once: with k=10 and refine_factor=50, a block reads at
# most 64 * 500 vectors of 2 KB (512 float32 dimensions), 64 MB.
QUERY_BLOCK = 64
# Where the tag lives in the table's schema metadata.
TAG = b"sklearn_clip"
# The ``embed`` command's shard folders (sklearn_clip/_cli/shards.py): the
# manifest's name and the shards' pattern, read here without the command line.
SHARD_MANIFEST, SHARD_PATTERN = "_manifest.json", "shard-*.parquet"

DEFAULT_OPTIONS = {
    "path": None,  # the database folder (required)
    "table": "embeddings",  # the table's name in it
    "mode": "create",  # "create" a new table, or "overwrite" one of ours
    "chunk_size": 8192,  # rows embedded and appended at a time
    "index_min_rows": 10_000,  # below this, queries scan the table exactly
    "num_partitions": None,  # IVF lists; LanceDB's choice (about sqrt(n)) if None
    "num_sub_vectors": None,  # PQ codes per row; dim // 16 if None
    "nprobes": 64,  # IVF lists a query scans
    # Candidates re-ranked exactly, per hit asked: 50 reached recall@10 0.9997
    # at 1M rows where 10 gave 0.65 and 30 0.95 (benchmarks/search_scale.py).
    "refine_factor": 50,
}


def _lancedb():
    try:
        import lancedb
    except ImportError as exc:
        raise ImportError(
            "index='lancedb' needs the lancedb package: "
            "pip install lancedb, the package's 'lance' extra (or use index='exact')"
        ) from exc
    return lancedb


def check_options(options):
    """The options with their defaults; unknown or missing ones refused."""
    unknown = set(options or {}) - set(DEFAULT_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown index_options {sorted(unknown)} for index='lancedb'; the "
            f"options are {sorted(DEFAULT_OPTIONS)}"
        )
    options = {**DEFAULT_OPTIONS, **(options or {})}
    if options["path"] is None:
        raise ValueError(
            "index='lancedb' needs index_options={'path': FOLDER}: the folder "
            "of the LanceDB database that holds (or will hold) the table"
        )
    if options["mode"] not in ("create", "overwrite"):
        raise ValueError(
            f"index_options['mode'] must be 'create' or 'overwrite'; got "
            f"{options['mode']!r}"
        )
    return options


class LanceIndex:
    """A LanceDB table of unit-length embeddings, searched by cosine."""

    def __init__(self, options):
        self.options = check_options(options)
        self._table = None

    @property
    def where(self):
        return f"table {self.options['table']!r} in {str(self.options['path'])!r}"

    def exists(self):
        if self._table is not None:
            return True
        try:
            self.table()
        except ValueError:  # LanceDB's "Table ... was not found"
            return False
        return True

    def table(self):
        if self._table is None:
            db = _lancedb().connect(self.options["path"])
            self._table = db.open_table(self.options["table"])
        return self._table

    def tag(self):
        """What the table says of itself: model, fingerprint, modality, dim."""
        metadata = self.table().schema.metadata or {}
        if TAG not in metadata:
            raise ValueError(
                f"{self.where} was not written by sklearn-clip (its schema has "
                "no sklearn_clip tag); give another index_options['path'] or "
                "'table'"
            )
        return json.loads(metadata[TAG])

    def create(self, tag):
        """A new, empty table with ``tag``; one of ours replaced under 'overwrite'."""
        import pyarrow as pa

        replacing = self.exists()
        if replacing:
            self.tag()  # never replace a table sklearn-clip did not write
            if self.options["mode"] != "overwrite":
                raise ValueError(
                    f"{self.where} exists already: fit(None) opens it, "
                    "partial_fit(X) appends to it, and index_options "
                    "{'mode': 'overwrite'} replaces it"
                )
        schema = pa.schema(
            [
                pa.field("row", pa.int64()),
                pa.field("path", pa.string()),
                pa.field("vector", pa.list_(pa.float32(), tag["dim"])),
            ],
            metadata={TAG: json.dumps(tag)},
        )
        db = _lancedb().connect(self.options["path"])
        name = self.options["table"]
        # "create" for a new table: "overwrite" would log a warning that there
        # is nothing to overwrite.
        mode = "overwrite" if replacing else "create"
        self._table = db.create_table(name, schema=schema, mode=mode)

    def append(self, start, sources, embeddings):
        """Append rows ``start``, ``start + 1``...; rows with NaN are left out."""
        import pyarrow as pa

        keep = np.flatnonzero(~np.isnan(embeddings).any(axis=1))
        if len(keep) == 0:
            return
        vectors = np.ascontiguousarray(embeddings[keep], np.float32)
        column = pa.FixedSizeListArray.from_arrays(
            pa.array(vectors.reshape(-1)), vectors.shape[1]
        )
        rows = pa.table(
            {
                "row": pa.array(start + keep, pa.int64()),
                "path": pa.array([sources[i] for i in keep], pa.string()),
                "vector": column,
            }
        )
        self.table().add(rows)

    def build(self, dim):
        """Index the table once it is large enough; fold new rows into an index."""
        table = self.table()
        if table.list_indices():
            table.optimize()
            return
        if table.count_rows() < self.options["index_min_rows"]:
            return
        from lancedb.index import IvfPq

        sub_vectors = self.options["num_sub_vectors"] or max(1, dim // 16)
        config = IvfPq(
            distance_type="cosine",
            num_partitions=self.options["num_partitions"],
            num_sub_vectors=sub_vectors,
        )
        table.create_index("vector", config=config)

    def count(self):
        return self.table().count_rows()

    def n_rows(self):
        """One more than the last row number stored (rows that failed are not)."""
        rows = self.table().search().select(["row"]).limit(None).to_arrow()
        return int(np.max(rows.column("row").to_numpy(), initial=-1)) + 1

    def search(self, queries, k):
        """``(similarities, rows)``, each ``(m, k)``, nearest first, ties by row.

        Queries go ``QUERY_BLOCK`` at a time: each reads its re-ranked
        candidates' vectors into memory, so a block bounds what is held.
        """
        parts = [
            self._search_block(queries[start : start + QUERY_BLOCK], k)
            for start in range(0, len(queries), QUERY_BLOCK)
        ]
        if not parts:
            return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
        return tuple(np.concatenate(found) for found in zip(*parts))

    def _search_block(self, queries, k):
        sims = np.full((len(queries), k), -np.inf, np.float32)
        rows = np.full((len(queries), k), -1, np.int64)
        query = self.table().search(np.asarray(queries, np.float32))
        query = query.distance_type("cosine").limit(k).select(["row", "_distance"])
        if self.table().list_indices():
            query = query.nprobes(self.options["nprobes"])
            query = query.refine_factor(self.options["refine_factor"])
        found = query.to_arrow()
        which = np.zeros(len(found), np.int64)  # one query: no query_index
        if "query_index" in found.column_names:
            which = found.column("query_index").to_numpy()
        # Hits come grouped by query, nearest first: their rank within it.
        rank = np.arange(len(which)) - np.searchsorted(which, which)
        sims[which, rank] = 1.0 - found.column("_distance").to_numpy()
        rows[which, rank] = found.column("row").to_numpy()
        return tie_ordered(sims, rows)

    def stored(self, size, start=0):
        """The stored rows from the ``start``-th on, at most ``size`` at a time
        (fewer where the table's files meet): ``(row numbers, embeddings)``."""
        query = self.table().search().select(["row", "vector"])
        query = query.offset(start).limit(None)
        for batch in query.to_batches(size):
            vectors = batch.column("vector").flatten().to_numpy(zero_copy_only=False)
            vectors = vectors.reshape(batch.num_rows, -1).astype(np.float32)
            yield batch.column("row").to_numpy(), vectors

    def sources(self, rows):
        """The ``path`` stored for each row number (None for -1)."""
        rows = np.asarray(rows, np.int64)
        wanted = sorted({int(r) for r in rows.ravel() if r >= 0})
        found = {}
        if wanted:
            listed = ", ".join(map(str, wanted))
            held = self.table().search().where(f"row IN ({listed})")
            held = held.select(["row", "path"]).limit(None).to_arrow()
            found = zip(held.column("row").to_pylist(), held.column("path").to_pylist())
            found = dict(found)
        paths = [found.get(int(r)) for r in rows.ravel()]
        return np.array(paths, object).reshape(rows.shape)

    def __getstate__(self):
        # The table stays on disk: a pickle holds where it is, not its rows.
        return {"options": self.options}

    def __setstate__(self, state):
        self.options, self._table = state["options"], None
