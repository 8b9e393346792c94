"""Inputs that used to be taken silently: missing labels, invalid model ids,
captions with nothing to contrast. docs/reliability.md lists them and these tests.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPEmbeddingTransformer,
    _loading,
    load_model,
)
from sklearn_clip.datasets import make_shapes
from sklearn_clip.toy import make_tiny_clip

FAST = {"image_size": 16, "patch_size": 4, "hidden_size": 32, "num_layers": 1}
TRAIN = {"max_epochs": 1, "batch_size": 4, "validation_fraction": None}


@pytest.fixture(scope="module")
def fast_path(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("fast-clip"), **FAST)


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(8, image_size=16, random_state=0)


# -- 12. missing labels with caption_template ---------------------------------------


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA, "", "  "])
def test_a_missing_label_raises_naming_its_row(fast_path, shapes, missing):
    labels = pd.Series(shapes.color, index=[f"img{i}" for i in range(8)], dtype=object)
    labels.iloc[3] = missing
    tuner = CLIPContrastiveFinetuner(fast_path, caption_template="a {} shape", **TRAIN)
    with pytest.raises(ValueError, match=r"label of row 3 \(index 'img3'\) is missing"):
        tuner.fit(shapes.images, labels)
    assert not hasattr(tuner, "history_")  # refused before any training


def test_a_missing_label_raises_in_score_too(fast_path, shapes):
    tuner = CLIPContrastiveFinetuner(fast_path, caption_template="a {} shape", **TRAIN)
    tuner.fit(shapes.images, shapes.color)
    with pytest.raises(ValueError, match="label of row 0 is missing"):
        tuner.score(shapes.images, [None, *shapes.color[1:]])


def test_labels_that_are_not_strings_still_work(fast_path, shapes):
    ids = [i % 3 for i in range(8)]  # integer labels are labels, not missing ones
    tuner = CLIPContrastiveFinetuner(fast_path, caption_template="class {}", **TRAIN)
    assert 0 <= tuner.fit(shapes.images, ids).score(shapes.images, ids) <= 1


# -- 13. model strings that are neither a hub id nor a directory ---------------------


@pytest.fixture
def no_hub(monkeypatch):
    """Fail the test if the hub (or its cache) is consulted."""

    def refuse(*args, **kwargs):
        raise AssertionError("the hub was consulted")

    monkeypatch.setattr("sklearn_clip._loader.registry.hub_snapshot", refuse)
    monkeypatch.setattr(_loading, "hub_reachable", refuse)


@pytest.mark.parametrize("source", ["openai/clip vit base", "  ", "~/.ssh", ""])
def test_an_invalid_model_string_is_named_as_such(source, no_hub, isolated_cache):
    with pytest.raises(
        ValueError, match="not a valid hub id nor an existing directory"
    ):
        load_model(source)


def test_a_tilde_path_gets_a_hint(no_hub, isolated_cache):
    with pytest.raises(ValueError, match="expanduser"):
        load_model("~/models/clip")


def test_an_empty_string_never_means_the_current_directory(
    tiny_clip_path, monkeypatch, no_hub, isolated_cache
):
    monkeypatch.chdir(tiny_clip_path)  # a loadable model directory
    for source in ["", " "]:
        with pytest.raises(ValueError, match="not a valid hub id"):
            load_model(source)
    assert load_model(".", device="cpu").embedding_dim == 32  # said explicitly


def test_estimators_report_an_invalid_model_string(no_hub, isolated_cache):
    with pytest.raises(ValueError, match="'openai/clip vit base' is not a valid hub"):
        CLIPEmbeddingTransformer("openai/clip vit base", modality="text").fit(["a"])


def test_a_valid_hub_id_still_goes_to_the_hub(monkeypatch, isolated_cache):
    asked = []

    def snapshot(source, revision, local_files_only):
        asked.append(source)
        raise OSError("not cached")

    monkeypatch.setattr("sklearn_clip._loader.registry.hub_snapshot", snapshot)
    with pytest.raises(OSError, match="not cached"):
        load_model("someone/clip-vit-base")
    assert asked == ["someone/clip-vit-base"]


# -- 14. captions with nothing to contrast ---------------------------------------------


@pytest.mark.parametrize("template", [None, "a {} shape"])
def test_identical_captions_warn_that_there_is_nothing_to_contrast(
    fast_path, shapes, template
):
    y = ["red"] * 8 if template else ["a red shape"] * 8
    tuner = CLIPContrastiveFinetuner(fast_path, caption_template=template, **TRAIN)
    with pytest.warns(UserWarning, match="single distinct caption has nothing to"):
        tuner.fit(shapes.images, y)


def test_distinct_captions_do_not_warn(fast_path, shapes):
    tuner = CLIPContrastiveFinetuner(fast_path, **TRAIN)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuner.fit(shapes.images, shapes.captions)
    assert not [w for w in caught if "nothing to contrast" in str(w.message)]
