"""From inputs to embeddings: the model handle, input rows, image decoding and
preprocessing, batching, and the on-disk embedding cache.

Imports ``_models`` and the foundation modules only.
"""
