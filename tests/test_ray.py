"""Ray Data: the recipe of ``docs/scaling.md``, run as written, on local actors.

The recipe's callable class is taken from the page itself, so the page cannot
drift from what is tested. Embeddings and zero-shot probabilities from two
actors equal the in-memory results row for row.
"""

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sklearn_clip import CLIPEmbeddingTransformer, CLIPZeroShotClassifier

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

PAGE = Path(__file__).parents[1] / "docs" / "scaling.md"
N_FILES = 400


def recipe():
    """The namespace of the page's code block that starts ``# Ray Data recipe``."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    [code] = [b for b in blocks if b.startswith("# Ray Data recipe")]
    namespace = {"__name__": "ray_recipe"}
    exec(compile(code, str(PAGE), "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def ray_session():
    # Workers import this checkout, as the driver does.
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}},
    )
    yield
    ray.shutdown()


@pytest.mark.slow  # starting Ray takes 20 s or more
def test_ray_recipe_matches_in_memory(ray_session, tiny_clip_path, tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(N_FILES):
        path = tmp_path / f"{i:04d}.png"
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    embedder = CLIPEmbeddingTransformer(tiny_clip_path, device="cpu").fit(paths[:1])
    classifier = CLIPZeroShotClassifier(
        tiny_clip_path, candidate_labels=["red", "green", "blue"], device="cpu"
    ).fit()
    apply = recipe()["apply"]

    dataset = ray.data.from_items([{"path": p} for p in paths])
    embedded = apply(dataset, embedder, batch_size=64).take_all()
    classified = apply(
        dataset, classifier, method="predict_proba", batch_size=64
    ).take_all()

    assert [row["path"] for row in embedded] == paths  # same rows, same order
    np.testing.assert_allclose(
        np.stack([row["transform"] for row in embedded]),
        embedder.transform(paths),
        atol=1e-6,
    )
    assert [row["path"] for row in classified] == paths
    np.testing.assert_allclose(
        np.stack([row["predict_proba"] for row in classified]),
        classifier.predict_proba(paths),
        atol=1e-6,
    )
