"""Decoding threads: one per core this process may use, or ``n_jobs``."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_clip import CLIPEmbeddingTransformer, CLIPZeroShotClassifier
from sklearn_clip._encoding import prefetch


@pytest.mark.parametrize(
    ("cores", "expected"), [({0}, 1), ({0, 5, 9}, 3), (set(range(64)), 32)]
)
def test_default_follows_cpu_affinity_not_cpu_count(monkeypatch, cores, expected):
    monkeypatch.setattr(prefetch.os, "sched_getaffinity", lambda pid: cores)
    monkeypatch.setattr(prefetch.os, "cpu_count", lambda: 128)
    assert prefetch.default_workers() == expected


@pytest.fixture
def pool_sizes(monkeypatch):
    sizes = []

    class Recording(ThreadPoolExecutor):
        def __init__(self, max_workers=None, **kwargs):
            sizes.append(max_workers)
            super().__init__(max_workers=max_workers, **kwargs)

    monkeypatch.setattr(prefetch, "ThreadPoolExecutor", Recording)
    return sizes


ESTIMATORS = {
    "embedding": (CLIPEmbeddingTransformer, {}, "transform"),
    "zero-shot": (CLIPZeroShotClassifier, {"candidate_labels": ["a", "b"]}, "predict"),
}


@pytest.mark.parametrize("name", ESTIMATORS)
def test_n_jobs_sets_the_decoding_threads(tiny_clip_path, pool_sizes, name):
    cls, params, method = ESTIMATORS[name]
    images = [np.full((8, 8, 3), i * 40, np.uint8) for i in range(5)]
    for n_jobs, expected in [(3, 3), (None, prefetch.default_workers())]:
        estimator = cls(tiny_clip_path, device="cpu", n_jobs=n_jobs, **params)
        getattr(estimator.fit(images), method)(images)
        assert pool_sizes[-1] == expected


def test_n_jobs_must_be_positive(tiny_clip_path):
    with pytest.raises(InvalidParameterError, match="n_jobs"):
        CLIPEmbeddingTransformer(tiny_clip_path, n_jobs=0).fit(["x"])
