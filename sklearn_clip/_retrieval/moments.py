"""Moments as search hits: the frames of a video collection, searched by time.

A collection fitted on videos keeps, beside one pooled embedding per clip
(what :meth:`~sklearn_clip.CLIPNearestNeighbors.kneighbors` searches), the
embedding of every sampled frame with its clip and time (``frames_``), so
that :meth:`~MomentSearchMixin.search_moments` can answer "where in which
clip" rather than only "which clip". A collection of still images keeps no
frames: its rows are its moments already.
"""

from numbers import Integral

import numpy as np
from sklearn.utils.validation import check_is_fitted

from sklearn_clip._encoding.inputs import as_rows
from sklearn_clip._encoding.video import is_video
from sklearn_clip._retrieval import search as _search


class MomentSearchMixin:
    """How :class:`~sklearn_clip.CLIPNearestNeighbors` embeds its collection,
    keeps the frames of its videos, and searches them."""

    def _embed(self, X, modality, *, dim=True):
        """Unit-length float32 embeddings of ``X`` and the rows that failed."""
        if modality == "embedding":
            return _search.unit_rows(X, self.embedding_dim_ if dim else None), []
        return self._encode_rows(X, modality=modality)

    def _embed_collection(self, X, *, reset):
        """Embed rows of the collection (``fit`` and ``partial_fit`` only).

        Returns what :meth:`_embed` returns; the frames of video rows go to
        ``frames_``, replaced by ``fit`` (``reset``) and extended by
        ``partial_fit``, whose rows are numbered after the earlier ones.
        """
        if reset:
            self.__dict__.pop("frames_", None)
        held = self.__dict__.get("frames_")
        if self.modality != "image" or (held is None and not _has_video(X)):
            return self._embed(X, self.modality, dim=None if reset else True)
        found = self._encode_frames(X)
        start = 0 if reset else self.n_samples_fit_
        if held is None and start:  # the earlier rows: one frame each
            held = _still_frames(self.embeddings_, np.arange(start))
        new = {key: found[key] for key in ("frame", "time", "embedding")}
        new["row"] = found["position"] + start
        self.frames_ = _joined(held, new, self.embedding_dtype)
        return found["pooled"], found["errors"]

    def search_moments(self, X, n_neighbors=None, *, query_modality=None):
        """The frames of the collection's videos nearest to each query.

        Where :meth:`kneighbors` ranks clips by their pooled embedding, this
        ranks every sampled frame, so a hit says in which clip and when.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Queries: texts, images or embeddings (see ``query_modality``).
        n_neighbors : int, default=None
            Hits per query; ``self.n_neighbors`` when None. At most the
            number of readable frames. Several hits may come from one clip.
        query_modality : {"image", "text", "embedding"}, default=None
            What the queries are; the collection's ``modality`` when None.

        Returns
        -------
        pandas.DataFrame
            ``n_neighbors`` rows per query, nearest first: ``query`` (its
            position), ``rank`` (from 1), ``row`` (the clip's row in the
            collection), ``frame`` (its number in the clip), ``time``
            (seconds from the clip's start; NaN for a still image) and
            ``distance`` (``1 - cosine similarity``; equal distances are
            ordered by frame). A query that cannot be read under
            ``on_error="nan"`` gets ``row`` -1 and ``distance`` inf.

        Raises
        ------
        ValueError
            If the collection holds no video.
        """
        import pandas as pd

        check_is_fitted(self)
        frames = self.__dict__.get("frames_")
        if self.index == "lancedb":
            raise ValueError(
                "search_moments searches frames kept in memory, and a LanceDB "
                "table stores one pooled row per clip: fit a searcher with "
                "index='exact' or 'faiss' on the videos to search their moments"
            )
        if frames is None:
            raise ValueError(
                "search_moments needs a collection with videos; this one was "
                "fitted on none (use kneighbors to search its rows)"
            )
        collection, positions = _search.matchable(frames["embedding"])
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        if not isinstance(k, Integral) or not 1 <= k <= len(positions):
            raise ValueError(
                f"n_neighbors must be an integer from 1 to {len(positions)} (the "
                f"readable frames in the collection); got {k!r}"
            )
        queries, failed = self._queries(X, query_modality)
        sims, found = _search.top_k(collection, queries, k)
        hits = positions[found].ravel()
        table = pd.DataFrame(
            {
                "query": np.repeat(np.arange(len(queries)), k),
                "rank": np.tile(np.arange(1, k + 1), len(queries)),
                "row": frames["row"][hits],
                "frame": frames["frame"][hits],
                "time": frames["time"][hits],
                "distance": _search.cosine_distances(sims).ravel(),
            }
        )
        lost = np.repeat(failed, k)
        table.loc[lost, ["row", "distance", "time"]] = (-1, np.inf, np.nan)
        return table


def _has_video(X):
    return any(is_video(row) for row in as_rows(X, kind="image")[0])


def _still_frames(embeddings, rows):
    n = len(rows)
    return {
        "row": rows,
        "frame": np.zeros(n, np.int64),
        "time": np.full(n, np.nan),
        "embedding": embeddings,
    }


def _joined(held, new, dtype):
    """``held`` and ``new`` frames as one table of numpy columns."""
    new = {**new, "embedding": np.asarray(new["embedding"]).astype(dtype)}
    if held is None:
        return {key: np.asarray(value) for key, value in new.items()}
    return {key: np.concatenate([held[key], np.asarray(new[key])]) for key in held}
