"""Reliability, round four: settings per thread, model cards, values where they
enter, persisted state.

One test per class of defect: the name says the class, the body the cases of
it.
"""

import copy
import io
import math
import pickle
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPFewShotClassifier,
    CLIPZeroShotClassifier,
    config_context,
    get_config,
    load_model,
    skops_trusted_types,
)
from sklearn_clip._backends.torch.precision import auto_dtype
from sklearn_clip._encoding import prefetch
from sklearn_clip._encoding.preprocess import ImageConfig
from sklearn_clip._train.model_card import model_card
from sklearn_clip.datasets import make_shapes
from sklearn_clip.exceptions import ImageInputError
from sklearn_clip.toy import make_tiny_clip

CPU = torch.device("cpu")
LABELS = ["bird", "cat", "dog"]


def _run_threads(*targets):
    """Run each target in a thread of its own; re-raise the first failure."""
    errors = []

    def guarded(target):
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if errors:
        raise errors[0]


def _setting():
    return get_config()["auto_dtype"], auto_dtype(CPU)


# -- settings per thread ---------------------------------------------------------
def test_settings_per_thread_a_context_in_one_thread_is_not_seen_by_another():
    entered, read = threading.Event(), threading.Event()
    seen = {}

    def with_context():
        with config_context(auto_dtype="float16"):
            entered.set()
            read.wait(10)
            seen["own"] = _setting()

    def other():
        seen["before"] = _setting()
        entered.wait(10)
        seen["during"] = _setting()
        read.set()

    _run_threads(with_context, other)
    assert seen["own"] == ("float16", torch.float16)
    assert seen["during"] == seen["before"] != seen["own"]


def test_settings_per_thread_overlapping_contexts_restore_each_threads_own():
    # A enters, B enters, A leaves, B leaves: each thread must see its own
    # value inside, and its own earlier value after, whatever the other does.
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        before = get_config()["auto_dtype"]
        with config_context(auto_dtype="float16"):
            a_in.set()
            b_in.wait(10)
            seen["a inside"] = get_config()["auto_dtype"]
        a_out.set()
        seen["a after"] = (before, get_config()["auto_dtype"])

    def b():
        before = get_config()["auto_dtype"]
        a_in.wait(10)
        with config_context(auto_dtype="bfloat16"):
            b_in.set()
            a_out.wait(10)
            seen["b inside"] = get_config()["auto_dtype"]
        seen["b after"] = (before, get_config()["auto_dtype"])

    caller = get_config()
    _run_threads(a, b)
    assert seen["a inside"] == "float16"
    assert seen["b inside"] == "bfloat16"
    assert seen["a after"][0] == seen["a after"][1]
    assert seen["b after"][0] == seen["b after"][1]
    assert get_config() == caller


def test_settings_per_thread_reach_the_decoding_threads_of_a_call(monkeypatch):
    # The decoding threads work for one call of the caller's: they take the
    # caller's settings, as scikit-learn's Parallel passes its config along.
    seen = []

    def recording(item, config):
        seen.append(get_config()["auto_dtype"])
        return item

    monkeypatch.setattr(prefetch, "prepare_image", recording)
    rows = [np.zeros((4, 4, 3), np.uint8)] * 6
    with config_context(auto_dtype="float16"):
        batches = prefetch.iter_prepared_batches(
            rows, None, ImageConfig(size=4, crop=(4, 4)), batch_size=2,
            on_error="raise", n_workers=3,
        )  # fmt: skip
        assert sum(len(batch) for _, batch in batches) == 6
    assert seen == ["float16"] * 6


# -- model cards -------------------------------------------------------------------
FAST = {"image_size": 16, "patch_size": 4, "hidden_size": 32, "num_layers": 1}


def test_model_card_yaml_survives_any_source_path_and_keeps_local_paths_out(
    tmp_path, float32
):
    from huggingface_hub import ModelCard

    # A folder name that breaks hand-written YAML: ": " makes a mapping, the
    # newline a key of its own.
    source = make_tiny_clip(tmp_path / "base: v1\nlicense: stolen", **FAST)
    shapes = make_shapes(16, image_size=16, random_state=0)
    tuner = CLIPContrastiveFinetuner(
        source, max_epochs=1, batch_size=8, caption_template="a {} shape",
        random_state=0,
    ).fit(shapes.images, shapes.color)  # fmt: skip
    folder = tuner.save_pretrained(tmp_path / "tuned")
    text = (folder / "README.md").read_text(encoding="utf-8")
    data = ModelCard.load(folder / "README.md").data.to_dict()
    assert set(data) == {"library_name", "pipeline_tag", "tags"}
    assert data["pipeline_tag"] == "zero-shot-image-classification"
    assert data["library_name"] == "transformers"
    assert "sklearn-clip" in data["tags"]
    assert str(source) not in text and str(tmp_path) not in text
    # A hub id is the base model, exactly as given.
    as_if_from_hub = copy.copy(tuner)
    as_if_from_hub.model = "openai/clip-vit-base-patch32"
    hub_card = ModelCard(model_card(as_if_from_hub))
    assert hub_card.data.base_model == "openai/clip-vit-base-patch32"


# -- values validated where they enter -------------------------------------------
@pytest.fixture(scope="module")
def few_shot_data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8), np.repeat(LABELS, 2)


@pytest.mark.parametrize(
    "weights, match",
    [
        ({"class_weight": {"bird": -1.0}}, r"class 'bird'.*-1\.0"),
        ({"class_weight": {"cat": math.nan}}, r"class 'cat'.*nan"),
        ({"class_weight": dict.fromkeys(LABELS, 0.0)}, r"class_weight.*zero"),
        ({"class_weight": {"cow": 2.0}}, r"'cow'.*not one of the classes"),
        ({"sample_weight": [1, 1, -2, 1, 1, 1]}, r"row 2.*-2"),
        ({"sample_weight": [0.0] * 6}, r"sample_weight.*zero"),
    ],
    ids=["negative", "nan", "all-zero", "unknown-class", "negative-row", "zero-rows"],
)
def test_values_validated_weights_refused_naming_the_class_or_row(
    tiny_clip_path, few_shot_data, weights, match
):
    images, labels = few_shot_data
    params = {"class_weight": weights.get("class_weight")}
    clf = CLIPFewShotClassifier(tiny_clip_path, candidate_labels=LABELS, **params)
    with pytest.raises(ValueError, match=match):
        clf.fit(images, labels, sample_weight=weights.get("sample_weight"))


def test_values_validated_datasets_bytes_slot_holds_bytes(tmp_path, tiny_clip):
    image = Image.fromarray(np.full((8, 8, 3), 200, np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path = tmp_path / "photo.png"
    path.write_bytes(buffer.getvalue())
    good = {"bytes": buffer.getvalue(), "path": None}
    # A path in the bytes slot is not read: the row is refused, named.
    with pytest.raises(ImageInputError, match=r"row 1.*'bytes'.*str"):
        tiny_clip.encode_images([good, {"bytes": str(path), "path": None}])
    # Every bytes-like value is bytes.
    as_view = {"bytes": memoryview(buffer.getvalue()), "path": None}
    np.testing.assert_allclose(
        tiny_clip.encode_images([as_view]), tiny_clip.encode_images([good]), atol=1e-6
    )


# -- persisted state ------------------------------------------------------------------
def _skops(estimator):
    sio = pytest.importorskip("skops.io")
    return sio.loads(sio.dumps(estimator), trusted=skops_trusted_types())


@pytest.mark.parametrize("round_trip", ["pickle", "skops"])
def test_persisted_state_holds_only_known_values(tiny_clip_path, round_trip):
    load = {"pickle": lambda e: pickle.loads(pickle.dumps(e)), "skops": _skops}
    # torch.compile's "options" reach the C++ compiler's command line.
    unsafe = {"backend": "inductor", "options": {"cpp.cxx": "/tmp/evil"}}
    handle = load_model(tiny_clip_path, device="cpu", dtype="float32", compile=unsafe)
    clf = CLIPZeroShotClassifier(handle, candidate_labels=LABELS).fit(None)
    with pytest.raises(ValueError, match=r"compile.*'options'"):
        load[round_trip](clf)
    # A parameter set past set_params' checks is refused too.
    tampered = CLIPZeroShotClassifier(tiny_clip_path, candidate_labels=LABELS)
    tampered.fit(None).__dict__["dtype"] = "float64"
    with pytest.raises(ValueError, match=r"dtype.*'float64'"):
        load[round_trip](tampered)
    # Known values still load.
    eager = load_model(tiny_clip_path, device="cpu", dtype="float32", compile=True)
    clf = CLIPZeroShotClassifier(eager, candidate_labels=LABELS).fit(None)
    assert load[round_trip](clf).model.compile_options == {}
    # A model handle saved on its own is checked as it is rebuilt.
    with pytest.raises(ValueError, match=r"compile.*'options'"):
        load[round_trip](handle)
