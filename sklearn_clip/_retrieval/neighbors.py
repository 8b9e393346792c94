"""CLIPNearestNeighbors: text-to-image and image-to-image search, near-duplicates."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from sklearn_clip._backends.interface import DEFAULT_MODEL
from sklearn_clip._base import (
    ENCODING_PARAMETER_CONSTRAINTS,
    CLIPEstimatorBase,
    fill_doc,
)
from sklearn_clip._retrieval import lance_searcher as _lance
from sklearn_clip._retrieval import search as _search
from sklearn_clip._retrieval.ann import APPROXIMATE_INDEXES, make_index
from sklearn_clip._retrieval.graph import NeighborsGraphMixin
from sklearn_clip._retrieval.moments import MomentSearchMixin

MODALITIES = ("image", "text", "embedding")


@fill_doc
class CLIPNearestNeighbors(NeighborsGraphMixin, MomentSearchMixin, CLIPEstimatorBase):
    """Search a collection of images (or texts) by text, by image or by vector.

    ``fit`` embeds the collection once; ``kneighbors`` then embeds the queries
    (texts for text-to-image search, images for search by example) and returns the
    most similar rows, with the cosine distance ``1 - cosine similarity``, like
    :class:`sklearn.neighbors.NearestNeighbors` with ``metric="cosine"``.
    ``partial_fit`` appends rows without re-embedding the others, and
    :meth:`find_duplicates` groups near-identical rows.

    Parameters
    ----------
    {model}
    n_neighbors : int, default=5
        Rows returned by :meth:`kneighbors` when it is not given a number.
    radius : float, default=0.5
        Cosine distance (``1 - similarity``, in [0, 2]) used by
        :meth:`radius_neighbors` when it is not given one.
    modality : {"image", "text", "embedding"}, default="image"
        What the rows of the collection are: images (paths, bytes, PIL images or
        arrays), strings, or an ``(n, d)`` array of embeddings computed elsewhere
        (for example by :class:`~sklearn_clip.CLIPEmbeddingTransformer`; no model is
        loaded for them; rows are scaled to unit length, rows all NaN are never
        matched, and a row with an infinite or NaN value is refused).
    index : {"exact", "faiss", "lancedb"}, default="exact"
        ``"exact"``: every row, in blocks (memory bounded whatever the size).
        ``"faiss"``: a graph index (HNSW, the ``ann`` extra), missing some
        true neighbours. ``"lancedb"``: the collection on disk, in a LanceDB
        table with an IVF-PQ index and exact re-ranking (the ``lance`` extra;
        ``fit(None)`` opens a table written before, ``fit(folder)`` adds
        ``embed`` shards, ``paths_[rows]`` reads paths; ``docs/retrieval.md``).
    embedding_dtype : {"float32", "float16"}, default="float32"
        How the collection's embeddings are stored. ``"float16"`` halves the
        memory; distances then differ from float32 ones by about 1e-3.
    index_options : dict, default=None
        For faiss: ``connectivity`` (32), ``expansion_add`` (128) and
        ``expansion_search`` (1024): its ``M``, ``efConstruction`` and
        ``efSearch``. For LanceDB: ``path`` (required), ``table``, ``mode``,
        ``nprobes``, ``refine_factor`` and more (``docs/retrieval.md``).
    {batch_size}
    {device}
    {dtype}
    {revision}
    {on_error}
    {store_weights_in_pickle}
    {progress}
    {cache_dir}
    {cache_dtype}
    {n_jobs}
    {video}

    Attributes
    ----------
    embeddings_ : ndarray of shape (n_samples_fit, embedding_dim)
        The collection's unit-length embeddings, in ``embedding_dtype``; NaN
        rows for images that could not be read (they are never returned).
    n_samples_fit_ : int
        Rows in the collection (``fit`` plus every ``partial_fit``).
    embedding_dim_ : int
        Length of the embeddings.
    input_errors_ : list of dict
        Under ``on_error="nan"``, the collection's rows that ``fit`` and
        ``partial_fit`` could not read: ``position`` (their row in the collection),
        ``index`` (pandas label, or the position), ``source`` (path or description),
        ``error`` (exception type) and ``message``. Searches record nothing: a query
        that cannot be read gets distances ``inf`` and indices ``-1``, and the
        :class:`~sklearn_clip.exceptions.InputErrorWarning` of that call lists it in
        its ``errors``.

    See Also
    --------
    sklearn.neighbors.NearestNeighbors : The same API over numeric features.
    CLIPEmbeddingTransformer : The embeddings on their own, as features.

    Notes
    -----
    The pickle holds the embeddings (and the approximate index), not the
    weights unless ``store_weights_in_pickle=True``: a loaded searcher answers
    text or image queries after reloading the model from ``model``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_clip import CLIPNearestNeighbors
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> rng = np.random.default_rng(0)
    >>> images = rng.integers(0, 255, (6, 30, 30, 3), dtype=np.uint8)
    >>> search = CLIPNearestNeighbors(make_tiny_clip(), n_neighbors=2).fit(images)
    >>> distances, indices = search.kneighbors(images[[3]], query_modality="image")
    >>> int(indices[0, 0]), float(distances[0, 0]) < 1e-6
    (3, True)
    >>> search.kneighbors(["a red circle"], query_modality="text")[1].shape
    (1, 2)
    """

    _parameter_constraints = {
        **CLIPEstimatorBase._parameter_constraints,
        **ENCODING_PARAMETER_CONSTRAINTS,
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "radius": [Interval(Real, 0, 2, closed="both")],
        "modality": [StrOptions(set(MODALITIES))],
        "index": [StrOptions({"exact", *APPROXIMATE_INDEXES})],
        "embedding_dtype": [StrOptions({"float32", "float16"})],
        "index_options": [dict, None],
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        n_neighbors=5,
        radius=0.5,
        modality="image",
        index="exact",
        embedding_dtype="float32",
        index_options=None,
        batch_size=32,
        device="auto",
        dtype="auto",
        revision=None,
        on_error="raise",
        store_weights_in_pickle=False,
        progress=False,
        cache_dir=None,
        cache_dtype="float32",
        n_jobs=None,
        video=None,
    ):
        self.model = model
        self.n_neighbors = n_neighbors
        self.radius = radius
        self.modality = modality
        self.index = index
        self.embedding_dtype = embedding_dtype
        self.index_options = index_options
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.revision = revision
        self.on_error = on_error
        self.store_weights_in_pickle = store_weights_in_pickle
        self.progress = progress
        self.cache_dir = cache_dir
        self.cache_dtype = cache_dtype
        self.n_jobs = n_jobs
        self.video = video

    # -- building the collection ---------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    @_lance.on_table
    def fit(self, X=None, y=None):
        """Embed the collection (and build the approximate index, if any).

        Parameters
        ----------
        X : list, ndarray, Series, one-column DataFrame, folder or None
            Images or texts (or embeddings, see ``modality``); see ``index``.
        y : None
            Ignored.

        Returns
        -------
        self : CLIPNearestNeighbors
            The fitted searcher.
        """
        for name in ("_handle", "_ann", "_matchable"):
            self.__dict__.pop(name, None)
        if self.modality != "embedding":
            self._validate_rows(X, kind=self.modality, reset=True)
            self._get_model(reset=True)
        embeddings, errors = self._embed_collection(X, reset=True)
        self.embedding_dim_ = embeddings.shape[1]
        self.embeddings_ = embeddings.astype(self.embedding_dtype)
        self.n_samples_fit_ = len(embeddings)
        self.input_errors_ = errors
        if self.index != "exact":
            self._ann = make_index(self.index, self.embedding_dim_, self.index_options)
            self._ann.add(self.embeddings_, 0)
        return self

    @_lance.on_table
    def partial_fit(self, X, y=None):
        """Append rows to the collection; the rows already there are kept.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            More rows of the collection's modality.
        y : None
            Ignored.

        Returns
        -------
        self : CLIPNearestNeighbors
            The searcher, with ``n_samples_fit_`` increased by ``len(X)``.
        """
        if not hasattr(self, "embeddings_"):
            return self.fit(X)
        embeddings, errors = self._embed_collection(X, reset=False)
        start = self.n_samples_fit_
        for record in errors:
            record["position"] += start
        self.input_errors_ = [*self.input_errors_, *errors]
        new = embeddings.astype(self.embedding_dtype)
        self.embeddings_ = np.concatenate([self.embeddings_, new])
        self.n_samples_fit_ = len(self.embeddings_)
        self.__dict__.pop("_matchable", None)
        if self.index != "exact":
            self._ann.add(new, start)
        return self

    def _collection(self):
        """The matchable rows, contiguous, and their row numbers."""
        if "_matchable" not in self.__dict__:
            self._matchable = _search.matchable(self.embeddings_)
        return self._matchable

    # -- searching -------------------------------------------------------------
    @_lance.on_table
    def kneighbors(
        self, X, n_neighbors=None, return_distance=True, *, query_modality=None
    ):
        """The rows nearest to each query, nearest first.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Queries: texts, images or embeddings (see ``query_modality``).
        n_neighbors : int, default=None
            Rows per query; ``self.n_neighbors`` when None. At most the
            number of readable rows in the collection.
        return_distance : bool, default=True
            Whether to return the distances as well.
        query_modality : {"image", "text", "embedding"}, default=None
            What the queries are; the collection's ``modality`` when None.

        Returns
        -------
        distances : ndarray of shape (n_queries, n_neighbors), float32
            Cosine distances, ``1 - cosine similarity``, increasing along
            each row; only returned with ``return_distance=True``.
        indices : ndarray of shape (n_queries, n_neighbors), int64
            Rows of the collection; equal distances are ordered by row.
        """
        check_is_fitted(self)
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        collection, rows = self._collection()
        if not isinstance(k, Integral) or not 1 <= k <= len(rows):
            raise ValueError(
                f"n_neighbors must be an integer from 1 to {len(rows)} (the "
                f"readable rows in the collection); got {k!r}"
            )
        queries, failed = self._queries(X, query_modality)
        sims = np.empty((len(queries), k), np.float32)
        indices = np.full((len(queries), k), -1, np.int64)
        if self.index != "exact":
            sims, indices = self._ann.search(queries, k)
        # Exact search answers every query the graph did not answer in full.
        short = np.flatnonzero((indices < 0).any(axis=1))
        sims[short], found = _search.top_k(collection, queries[short], k)
        indices[short] = rows[found]
        distances = _search.cosine_distances(sims)
        distances[failed], indices[failed] = np.inf, -1
        return (distances, indices) if return_distance else indices

    @_lance.on_table
    def radius_neighbors(
        self,
        X,
        radius=None,
        return_distance=True,
        sort_results=True,
        *,
        query_modality=None,
    ):
        """Every row within a cosine distance of each query, nearest first.

        Always exact, also with an approximate index (a LanceDB table is
        read a block of rows at a time).

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Queries, as for :meth:`kneighbors`.
        radius : float, default=None
            Largest cosine distance returned; ``self.radius`` when None.
        return_distance : bool, default=True
            Whether to return the distances as well.
        sort_results : bool, default=True
            Kept for scikit-learn's signature: results are always sorted.
        query_modality : {"image", "text", "embedding"}, default=None
            What the queries are; the collection's ``modality`` when None.

        Returns
        -------
        distances : ndarray of shape (n_queries,), dtype object
            One float32 array per query; only with ``return_distance=True``.
        indices : ndarray of shape (n_queries,), dtype object
            One int64 array of rows per query.
        """
        check_is_fitted(self)
        radius = self.radius if radius is None else radius
        collection, rows = self._collection()
        queries, failed = self._queries(X, query_modality)
        sims, found = _search.within(collection, queries, np.float32(1.0 - radius))
        found = [rows[f] for f in found]
        return _search.radius_answers(sims, found, failed, return_distance)

    def _queries(self, X, query_modality):
        modality = query_modality or self.modality
        if modality not in MODALITIES:
            raise ValueError(
                f"query_modality must be one of {MODALITIES} or None; got {modality!r}"
            )
        queries, _ = self._embed(X, modality)
        failed = np.isnan(queries).any(axis=1)
        return np.nan_to_num(queries), failed

    @_lance.on_table
    def find_duplicates(self, threshold=0.95):
        """Find the groups of rows that are near-copies of each other.

        The groups are the connected components (of two rows or more) of the
        graph joining every two rows whose cosine similarity is at least
        ``threshold``: a chain of near-copies is one group even when its ends
        are further apart.

        With ``index="exact"`` (and ``"lancedb"``, whose table is read two
        blocks at a time) every pair is compared (``n * n / 2`` dot
        products) and the groups are exact; pairs are merged into groups block
        by block, so memory stays under about 100 MB besides the embeddings
        and a few integers per row, however many pairs pass. With the faiss
        index each row is compared with its 16 approximate
        nearest neighbours, and each such pair is kept only if its exact
        similarity reaches the threshold: nothing below the threshold is ever
        grouped, but a near-copy that the index misses is not found.

        Parameters
        ----------
        threshold : float, default=0.95
            Cosine similarity, in [-1, 1], above which two rows are
            near-copies. How well a value separates copies from distinct
            images depends on the model: choose it from the similarities of
            known copies (see the docs' "search and duplicates" page).
            Similarities are compared allowing for the rounding of the stored
            embeddings (1e-6 in float32, 1e-3 in float16), so ``1.0`` groups
            exact copies.

        Returns
        -------
        list of ndarray
            Each group's rows in increasing order, groups ordered by their
            first row.
        """
        check_is_fitted(self)
        threshold = _search.check_threshold(threshold)
        collection, rows = self._collection()
        if self.index == "exact":
            found = _search.similar_groups(collection, threshold)
        else:
            candidates = self._ann.neighbour_positions(
                self.embeddings_, rows, _search.DUPLICATE_CANDIDATES
            )
            pairs = _search.verified_pairs(collection, candidates, threshold)
            found = _search.groups(len(rows), pairs)
        return [rows[group] for group in found]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_matchable", None)
        return state
