"""The one entry point to a model: :func:`~sklearn_clip.load_model` and the
process cache, exports (made on demand or by
:func:`~sklearn_clip.export_model`) and handles read back from pickles.

It calls the backends (:mod:`sklearn_clip._backends`) and is never called by
them; PyTorch and the runtimes are imported only when a model needs them.
"""
