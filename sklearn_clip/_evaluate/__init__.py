"""Evaluating models on a user's data: the parts behind :mod:`sklearn_clip.evaluate`."""
