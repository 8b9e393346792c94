"""Retrieval: exact and approximate search, near-duplicates, the nearest
neighbors estimator and the HTML contact sheet.
"""
