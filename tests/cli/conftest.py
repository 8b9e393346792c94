"""Set-up shared by the command-line tests."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of three small PNG images, for ``--images``."""
    folder = tmp_path_factory.mktemp("cli-images")
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 256, (16, 16, 3), np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return folder
