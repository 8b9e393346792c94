"""Set-up shared by the training tests: a tiny CLIP that trains in seconds,
and a few generated shapes to train it on."""

import pytest

from sklearn_clip.datasets import make_shapes
from sklearn_clip.toy import make_tiny_clip

# 16-pixel images in 4-pixel patches, one layer of width 32: a few optimiser
# steps take milliseconds, so a test can train several times.
FAST_CLIP = {
    "image_size": 16,
    "patch_size": 4,
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 2,
    "context_length": 16,
}


@pytest.fixture(scope="session")
def make_fast_clip():
    """``make_fast_clip(folder, **overrides)``: write a fast tiny CLIP there."""

    def make(folder, **overrides):
        return make_tiny_clip(folder, **{**FAST_CLIP, **overrides})

    return make


@pytest.fixture(scope="session")
def fast_path(make_fast_clip, tmp_path_factory):
    return make_fast_clip(tmp_path_factory.mktemp("fast-clip"))


@pytest.fixture(scope="session")
def shapes():
    return make_shapes(32, image_size=16, random_state=0)
