"""What a model is: its family's facts, loading from the hub or a folder,
precision, the forward passes, and the fingerprints that identify its weights.

Nothing here imports the rest of the package but ``exceptions``, ``_config``
and ``_options``.
"""
