"""``dtype="auto"``: a rule on what the hardware reports, and the bfloat16 path.

Every test here sets the CPU it pretends to be (``SKLEARN_CLIP_CPU_BF16``), so
the module passes alike on CPUs with native bfloat16 units and without; the
bfloat16 arithmetic itself runs everywhere (emulated where there are no units).
"""

import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from safetensors import safe_open

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPEmbeddingTransformer,
    CLIPZeroShotClassifier,
    config_context,
    get_config,
    load_model,
    set_config,
)
from sklearn_clip._backends.torch import precision
from sklearn_clip._backends.torch.weights import as_numpy_state, weights_dtype
from sklearn_clip.datasets import make_shapes

CPU = torch.device("cpu")


@pytest.fixture
def native(monkeypatch):
    """As on a CPU that reports native bfloat16 units (AMX, AVX512-BF16)."""
    monkeypatch.setenv(precision.CPU_BF16_VARIABLE, "native")


@pytest.fixture
def no_units(monkeypatch):
    """As on a CPU without them (AVX2 only)."""
    monkeypatch.setenv(precision.CPU_BF16_VARIABLE, "none")


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(12, image_size=30, random_state=0)


def _cpuinfo_flags():
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


# -- the rule -------------------------------------------------------------------
def test_reported_units_agree_with_the_kernels_cpu_flags():
    # The kernel's flags are a reference independent of torch's queries.
    flags = _cpuinfo_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo on this platform")
    expected = {"amx": "amx_tile" in flags, "avx512_bf16": "avx512_bf16" in flags}
    if not torch.backends.mkldnn.is_available():
        expected = dict.fromkeys(expected, False)
    reported = set(precision._reported_units())
    assert reported == {unit for unit, on in expected.items() if on}


def test_auto_is_bfloat16_on_a_cpu_with_native_units(native, tiny_clip_path):
    assert precision.auto_dtype(CPU) == torch.bfloat16
    handle = load_model(tiny_clip_path, device="cpu")
    assert handle.dtype == torch.bfloat16
    assert weights_dtype(handle.model) == torch.bfloat16
    # The temperature keeps its precision: it scales every logit.
    assert handle.model.logit_scale.dtype == torch.float32
    assert load_model(tiny_clip_path, device="cpu", dtype="float32").dtype == (
        torch.float32
    )


def test_auto_without_units_is_float32_bit_for_bit(no_units, tiny_clip_path, shapes):
    auto = load_model(tiny_clip_path, device="cpu")
    assert auto.dtype == torch.float32
    pinned = load_model(tiny_clip_path, device="cpu", dtype="float32")
    np.testing.assert_array_equal(
        auto.encode_images(shapes.images), pinned.encode_images(shapes.images)
    )


def test_an_unknown_cpu_report_is_refused(monkeypatch):
    monkeypatch.setenv(precision.CPU_BF16_VARIABLE, "maybe")
    with pytest.raises(ValueError, match="SKLEARN_CLIP_CPU_BF16 must be"):
        precision.auto_dtype(CPU)


def test_nothing_is_timed(native, monkeypatch):
    # The decision must not depend on the machine's load: no clock is read.
    import time

    def clock():
        raise AssertionError("the precision rule read a clock")

    monkeypatch.setattr(time, "perf_counter", clock)
    monkeypatch.setattr(time, "time", clock)
    assert precision.auto_dtype(CPU) == torch.bfloat16


@pytest.mark.slow
def test_auto_agrees_across_processes_beside_cpu_burners():
    code = (
        "import torch; from sklearn_clip._backends.torch.precision import auto_dtype; "
        "print(auto_dtype(torch.device('cpu')))"
    )
    burn = "import time\nend = time.time() + 120\nwhile time.time() < end: pass"
    burners = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(3)]
    try:
        runs = [
            subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
            for _ in range(6)
        ]
        answers = {run.communicate(timeout=300)[0].decode().strip() for run in runs}
    finally:
        for burner in burners:
            burner.kill()
    assert answers == {str(precision.auto_dtype(CPU))}


# -- the process-wide switch ----------------------------------------------------
def test_set_config_forces_one_precision_for_every_auto(native, tiny_clip_path):
    with config_context(auto_dtype="float32"):
        assert get_config()["auto_dtype"] == "float32"
        assert load_model(tiny_clip_path, device="cpu").dtype == torch.float32
        fitted = CLIPEmbeddingTransformer(tiny_clip_path, device="cpu").fit(["a"])
        assert fitted.dtype_ == "float32"
        # An explicit dtype still wins.
        assert load_model(tiny_clip_path, device="cpu", dtype="bfloat16").dtype == (
            torch.bfloat16
        )
    assert get_config()["auto_dtype"] == "rule"
    assert load_model(tiny_clip_path, device="cpu").dtype == torch.bfloat16


def test_set_config_checks_its_value():
    with pytest.raises(ValueError, match="auto_dtype must be one of"):
        set_config(auto_dtype="float64")
    assert get_config()["auto_dtype"] == "rule"


def test_the_environment_variable_sets_the_policy_of_a_new_process():
    code = (
        "import torch; from sklearn_clip import get_config; "
        "from sklearn_clip._backends.torch.precision import auto_dtype; "
        "print(get_config()['auto_dtype'], auto_dtype(torch.device('cpu')))"
    )
    environment = {
        "SKLEARN_CLIP_AUTO_DTYPE": "bfloat16",
        precision.CPU_BF16_VARIABLE: "none",
    }
    import os

    run = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.split() == ["bfloat16", "torch.bfloat16"]


# -- the bfloat16 path: float32 outputs that agree with float32 ------------------
def test_bfloat16_outputs_are_float32_and_agree_with_float32(
    native, tiny_clip_path, shapes
):
    labels = sorted(set(shapes.color))

    def probabilities(dtype):
        clf = CLIPZeroShotClassifier(tiny_clip_path, device="cpu", dtype=dtype)
        clf.fit(None, labels)
        return clf, clf.predict_proba(shapes.images)

    auto, auto_proba = probabilities("auto")
    pinned, pinned_proba = probabilities("float32")
    assert (auto.dtype_, pinned.dtype_) == ("bfloat16", "float32")
    np.testing.assert_allclose(auto_proba, pinned_proba, atol=5e-3)
    embedder = CLIPEmbeddingTransformer(tiny_clip_path, device="cpu").fit(shapes.images)
    assert embedder.transform(shapes.images).dtype == np.float32


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="known gap: on the demo's 64-wide trained model, bfloat16 image "
    "embeddings move probabilities by up to 0.02 and flip 2 of 120 near-tied "
    "answers; the 5e-3 / same-argmax promise holds for the tiny model only",
)
def test_bfloat16_keeps_the_trained_models_answers(native, demo_model_path):
    from sklearn_clip.demo import IMAGE_SIZE, SHAPES

    data = make_shapes(120, image_size=IMAGE_SIZE, random_state=7)
    labels = [f"a {shape}" for shape in SHAPES]
    answers = {}
    for dtype in ("auto", "float32"):
        clf = CLIPZeroShotClassifier(demo_model_path, device="cpu", dtype=dtype)
        answers[dtype] = clf.fit(None, labels).predict_proba(data.images)
    np.testing.assert_allclose(answers["auto"], answers["float32"], atol=5e-3)
    np.testing.assert_array_equal(
        answers["auto"].argmax(axis=1), answers["float32"].argmax(axis=1)
    )


def test_the_cache_keeps_float32_and_bfloat16_apart(
    native, tiny_clip_path, shapes, tmp_path
):
    def embed(dtype):
        embedder = CLIPEmbeddingTransformer(
            tiny_clip_path, device="cpu", dtype=dtype, cache_dir=tmp_path
        )
        return embedder.fit(shapes.images).transform(shapes.images)

    pinned, auto = embed("float32"), embed("auto")
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == 2  # one namespace per precision
    # Each precision reads its own entries back, not the other's.
    np.testing.assert_array_equal(embed("float32"), pinned)
    np.testing.assert_array_equal(embed("auto"), auto)
    assert not np.array_equal(auto, pinned)


# -- saving and training never lose precision ------------------------------------
def _safetensors_dtypes(directory):
    with safe_open(str(directory / "model.safetensors"), "pt") as weights:
        return {weights.get_slice(name).get_dtype() for name in weights.keys()}


def test_a_bfloat16_handle_saves_the_checkpoints_float32_weights(
    native, tiny_clip_path, tmp_path
):
    from transformers import pipeline

    handle = load_model(tiny_clip_path, device="cpu")
    assert handle.dtype == torch.bfloat16 and handle.stored_dtype == torch.float32
    out = handle.save_pretrained(tmp_path / "saved")
    assert _safetensors_dtypes(out) == {"F32"}
    source = load_model(tiny_clip_path, device="cpu", dtype="float32")
    saved = load_model(out, device="cpu", dtype="float32")
    for name, value in as_numpy_state(source.model).items():
        np.testing.assert_array_equal(as_numpy_state(saved.model)[name], value)

    # transformers' own pipeline on what was saved equals ours at float32.
    labels = ["red", "green", "blue"]
    image = make_shapes(1, image_size=30, random_state=3).images[0]
    from PIL import Image

    classify = pipeline("zero-shot-image-classification", model=str(out), device=-1)
    theirs = {
        r["label"]: r["score"]
        for r in classify(
            Image.fromarray(image),
            candidate_labels=labels,
            hypothesis_template="{}",
        )
    }
    clf = CLIPZeroShotClassifier(out, device="cpu", dtype="float32", templates=["{}"])
    ours = clf.fit(None, labels).predict_proba([image])[0]
    np.testing.assert_allclose(
        ours, [theirs[label] for label in clf.classes_], atol=5e-4
    )


def _tuner(path, dtype, **options):
    return CLIPContrastiveFinetuner(
        path,
        device="cpu",
        dtype=dtype,
        caption_template="a {} shape",
        learning_rate=1e-3,
        max_epochs=1,
        batch_size=6,
        validation_fraction=None,
        random_state=0,
        **options,
    )


def test_fine_tuning_starts_from_the_float32_weights(native, tiny_clip_path, shapes):
    auto = _tuner(tiny_clip_path, "auto").fit(shapes.images, shapes.color)
    pinned = _tuner(tiny_clip_path, "float32").fit(shapes.images, shapes.color)
    # A tiny model trains in float32 under "auto" even where bfloat16 is native,
    # from the checkpoint's float32 weights: the trained weights are identical.
    assert (auto.dtype_, auto.training_dtype_) == ("bfloat16", "float32")
    assert (pinned.dtype_, pinned.training_dtype_) == ("float32", "float32")
    assert auto.model_.dtype == torch.bfloat16
    trained = as_numpy_state(pinned.model_.model)
    kept = as_numpy_state(auto.model_.full_precision_model())
    for name, value in trained.items():
        np.testing.assert_array_equal(kept[name], value)


def test_a_bfloat16_fine_tuned_model_saves_its_float32_weights(
    native, tiny_clip_path, shapes, tmp_path
):
    tuner = _tuner(tiny_clip_path, "auto", wise_alpha=0.5)
    tuner.fit(shapes.images, shapes.color)
    out = tuner.save_pretrained(tmp_path / "tuned")
    assert _safetensors_dtypes(out) == {"F32"}
    saved = as_numpy_state(load_model(out, device="cpu", dtype="float32").model)
    for name, value in as_numpy_state(tuner.model_.full_precision_model()).items():
        np.testing.assert_array_equal(saved[name], value)


def _model_of_width(width):
    tower = types.SimpleNamespace(hidden_size=width)
    config = types.SimpleNamespace(vision_config=tower, text_config=tower)
    return types.SimpleNamespace(config=config)


@pytest.mark.parametrize(
    ("units", "dtype", "width", "expected"),
    [
        ("native", "auto", 64, None),  # the demo's width: bfloat16 costs more
        ("native", "auto", precision.CPU_BF16_TRAINING_MIN_WIDTH, torch.bfloat16),
        ("none", "auto", 1024, None),  # emulated bfloat16 never pays
        ("native", "float32", 1024, None),  # float32 means float32 training
        ("native", "float16", 1024, None),
        ("none", "bfloat16", 64, torch.bfloat16),  # asked for explicitly
    ],
)
def test_training_autocast_follows_the_rule(monkeypatch, units, dtype, width, expected):
    monkeypatch.setenv(precision.CPU_BF16_VARIABLE, units)
    model = _model_of_width(width)
    assert precision.training_autocast_dtype(CPU, dtype, model) == expected


def test_the_process_wide_switch_also_sets_training(native):
    wide = _model_of_width(1024)
    with config_context(auto_dtype="float32"):
        assert precision.training_autocast_dtype(CPU, "auto", wide) is None
    with config_context(auto_dtype="bfloat16"):
        narrow = _model_of_width(64)
        assert precision.training_autocast_dtype(CPU, "auto", narrow) == (
            torch.bfloat16
        )


def test_bfloat16_training_runs_under_autocast(monkeypatch, tiny_clip_path, shapes):
    seen = []
    real = torch.autocast

    def recording(device_type, *args, **kwargs):
        seen.append((device_type, kwargs.get("dtype"), kwargs.get("enabled")))
        return real(device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", recording)
    tuner = _tuner(tiny_clip_path, "bfloat16").fit(shapes.images, shapes.color)
    assert ("cpu", torch.bfloat16, True) in seen
    assert tuner.training_dtype_ == "bfloat16"
    assert np.isfinite([h["train_loss"] for h in tuner.history_]).all()
