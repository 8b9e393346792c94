"""Search results as a sparse neighbours graph, as scikit-learn's neighbours give it."""

import numpy as np
import sklearn.utils
from scipy.sparse import csr_matrix

#: What the graph's entries hold: 1 per neighbour, or its cosine distance.
GRAPH_MODES = ("connectivity", "distance")


class NeighborsGraphMixin:
    """``kneighbors_graph`` over an estimator's ``kneighbors``."""

    def kneighbors_graph(
        self, X, n_neighbors=None, mode="connectivity", *, query_modality=None
    ):
        """The nearest rows of each query as a sparse matrix, one row per query.

        The graph that :meth:`sklearn.neighbors.NearestNeighbors.kneighbors_graph`
        gives, for spectral clustering, ``Isomap`` or a label-propagation
        step over search results.

        Parameters
        ----------
        X : list, ndarray, Series or one-column DataFrame
            Queries: texts, images or embeddings (see ``query_modality``).
        n_neighbors : int, default=None
            Neighbours per query; ``self.n_neighbors`` when None.
        mode : {"connectivity", "distance"}, default="connectivity"
            ``"connectivity"`` puts 1 at each neighbour, ``"distance"`` its
            cosine distance (a distance of 0, an exact copy, is stored too).
        query_modality : {"image", "text", "embedding"}, default=None
            What the queries are; the collection's ``modality`` when None.

        Returns
        -------
        scipy.sparse.csr_matrix of shape (n_queries, n_samples)
            Row ``i`` holds the neighbours of query ``i`` among the
            ``n_samples_fit_`` rows of the collection; an unreadable query
            (under ``on_error="nan"``) has an empty row.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_clip import CLIPNearestNeighbors
        >>> rows = np.eye(3, dtype=np.float32)
        >>> search = CLIPNearestNeighbors(modality="embedding", n_neighbors=2)
        >>> search.fit(rows).kneighbors_graph(rows).toarray()
        array([[1., 1., 0.],
               [1., 1., 0.],
               [1., 0., 1.]])
        """
        if mode not in GRAPH_MODES:
            raise ValueError(f"mode must be one of {GRAPH_MODES}; got {mode!r}")
        distances, indices = self.kneighbors(
            X, n_neighbors, query_modality=query_modality
        )
        found = indices >= 0
        values = distances[found] if mode == "distance" else np.ones(found.sum())
        pointers = np.concatenate([[0], np.cumsum(found.sum(axis=1))])
        shape = (len(indices), self.n_samples_fit_)
        graph = csr_matrix((values.astype(np.float64), indices[found], pointers), shape)
        # scikit-learn's own graphs follow its sparse-interface setting (1.8+).
        align = getattr(sklearn.utils, "_align_api_if_sparse", lambda matrix: matrix)
        return align(graph)
