"""Exported models (ONNX Runtime, OpenVINO) against the PyTorch float32 path.

The reference is the PyTorch path at float32, which ``tests/models/test_families.py``
proves equal to transformers' own pipeline; here every exportable family, in
both checkpoint layouts, must give the same probabilities through each
runtime, and an export must classify in a process where PyTorch cannot be
imported. Exports take seconds each, so the fast run covers CLIP with both
runtimes, and the full family x layout x runtime matrix and int8 are marked
``slow`` (the int8 figures that matter, on ViT-B/32 shapes and a trained
model, are ``benchmarks/backends_cpu.py``'s).
"""

import json
import logging
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPEmbeddingTransformer,
    CLIPFewShotClassifier,
    CLIPNearestNeighbors,
    CLIPZeroShotClassifier,
    clear_model_cache,
    export_model,
    load_model,
)
from sklearn_clip._backends.exported.manifest import MANIFEST_NAME
from sklearn_clip._backends.torch.tensors import normalize_batch
from sklearn_clip._encoding.preprocess import ImageConfig, normalize_batch_numpy
from sklearn_clip._encoding.resample import resize_uint8
from sklearn_clip._models.families import EXPORT_FAMILIES, SUPPORTED_FAMILIES
from sklearn_clip.cli import main
from sklearn_clip.exceptions import InputErrorWarning
from sklearn_clip.toy import make_tiny_clip

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

LABELS = ["a red circle", "a blue square", "a green star"]
BACKENDS = ("onnx", "openvino")
FAST_CASES = {("clip", "transformers5")}


@pytest.fixture(scope="module")
def images(gradient):
    # Of different shapes and sizes: each is resized (down and up) and cropped.
    shapes = [(40, 30), (30, 52), (33, 33), (61, 47), (12, 20), (90, 200)]
    return [Image.fromarray(gradient(h, w, seed)) for seed, (h, w) in enumerate(shapes)]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """``exports(family, layout, backend, quantize=None)``: (checkpoint, export)."""
    made = {}

    def export(family="clip", layout="transformers5", backend="onnx", quantize=None):
        if (family, layout) not in made:
            folder = tmp_path_factory.mktemp(f"{family}-{layout}")
            made[family, layout] = Path(
                make_tiny_clip(folder, family=family, layout=layout)
            )
        checkpoint = made[family, layout]
        key = (family, layout, backend, quantize)
        if key not in made:
            target = tmp_path_factory.mktemp("-".join(map(str, key))) / "export"
            made[key] = export_model(
                checkpoint, target, backend=backend, quantize=quantize
            )
        return checkpoint, made[key]

    return export


def _matrix():
    for family in EXPORT_FAMILIES:
        for layout in ("transformers5", "legacy"):
            for backend in BACKENDS:
                slow = (family, layout) not in FAST_CASES
                marks = [pytest.mark.slow] if slow else []
                yield pytest.param(family, layout, backend, marks=marks)


def _reference(checkpoint):
    return load_model(checkpoint, backend="torch", device="cpu", dtype="float32")


def _cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


# -- preprocessing without PyTorch ---------------------------------------------


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_numpy_resize_equals_torch_bit_for_bit(mode):
    rng = np.random.default_rng(0)
    for _ in range(60):
        height, width = rng.integers(1, 400, 2)
        new_height, new_width = (int(n) for n in rng.integers(1, 260, 2))
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        expected = torch.nn.functional.interpolate(
            torch.from_numpy(pixels).permute(2, 0, 1)[None],
            size=(new_height, new_width),
            mode=mode,
            antialias=True,
        )[0].permute(1, 2, 0)
        resized = resize_uint8(pixels, new_height, new_width, mode)
        np.testing.assert_array_equal(resized, expected.numpy())


def test_numpy_normalization_equals_torch_bit_for_bit():
    rng = np.random.default_rng(1)
    config = ImageConfig(size=16, crop=(16, 16))
    arrays = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    np.testing.assert_array_equal(
        normalize_batch_numpy(arrays, config),
        normalize_batch(arrays, config).numpy(),
    )


# -- the same answers as PyTorch -----------------------------------------------


@pytest.mark.parametrize(("family", "layout", "backend"), _matrix())
def test_exported_zero_shot_equals_torch_float32(
    family, layout, backend, exports, images
):
    checkpoint, exported = exports(family, layout, backend)
    reference = _reference(checkpoint)
    handle = load_model(exported)
    assert (handle.backend, handle.family) == (backend, family)
    expected = CLIPZeroShotClassifier(reference, candidate_labels=LABELS).fit(None)
    ours = CLIPZeroShotClassifier(handle, candidate_labels=LABELS).fit(None)
    np.testing.assert_allclose(
        ours.predict_proba(images), expected.predict_proba(images), atol=1e-4
    )
    for encode in ("encode_images", "encode_texts"):
        inputs = (
            images if encode == "encode_images" else LABELS + ["a much longer text"]
        )
        cosines = _cosines(
            getattr(handle, encode)(inputs), getattr(reference, encode)(inputs)
        )
        assert cosines.min() >= 0.9999, (encode, cosines.min())


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_export_stays_close_to_float32(backend, exports, images):
    checkpoint, exported = exports("clip", backend=backend, quantize="int8")
    handle = load_model(exported)
    assert handle.precision_name == "int8"
    cosines = _cosines(
        handle.encode_images(images), _reference(checkpoint).encode_images(images)
    )
    assert cosines.min() >= 0.99


def test_every_inference_estimator_takes_an_export(exports, images):
    checkpoint, exported = exports("clip")
    torch_model, onnx_model = _reference(checkpoint), load_model(exported)
    y = np.array(["circle", "square"] * 3)

    def fitted(estimator_class, model, **params):
        return estimator_class(model, **params)

    pairs = [
        (CLIPEmbeddingTransformer, {}, lambda e: e.fit(images).transform(images)),
        (
            CLIPFewShotClassifier,
            {"candidate_labels": ["circle", "square"], "random_state": 0},
            lambda e: e.fit(images, y).predict_proba(images),
        ),
        (
            CLIPNearestNeighbors,
            {"n_neighbors": 2},
            lambda e: e.fit(images).kneighbors(LABELS, query_modality="text")[0],
        ),
    ]
    for estimator_class, params, answer in pairs:
        expected = answer(fitted(estimator_class, torch_model, **params))
        ours = answer(fitted(estimator_class, onnx_model, **params))
        np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_a_path_to_an_export_is_a_model_and_pickles_by_reference(exports, images):
    _, exported = exports("clip")
    classifier = CLIPZeroShotClassifier(str(exported), candidate_labels=LABELS)
    classifier.fit(None)
    assert classifier.dtype_ == "float32"
    expected = classifier.predict_proba(images)
    restored = pickle.loads(pickle.dumps(classifier))
    np.testing.assert_array_equal(restored.predict_proba(images), expected)
    carried = CLIPZeroShotClassifier(
        load_model(exported), candidate_labels=LABELS, store_weights_in_pickle=True
    ).fit(None)
    data = pickle.dumps(carried)
    assert len(data) > sum(p.stat().st_size for p in exported.glob("*.onnx"))
    np.testing.assert_array_equal(pickle.loads(data).predict_proba(images), expected)


def test_an_export_caches_and_reports_bad_rows_as_the_torch_path_does(
    exports, images, tmp_path
):
    _, exported = exports("clip")
    rows = [images[0], tmp_path / "missing.jpg", images[1]]
    embedder = CLIPEmbeddingTransformer(
        str(exported), on_error="nan", cache_dir=tmp_path / "cache"
    ).fit(rows[:1])
    with pytest.warns(InputErrorWarning, match="1 of 3 images") as record:
        first = embedder.transform(rows)
    assert [e["position"] for e in record[0].message.errors] == [1]
    assert np.isnan(first[1]).all() and np.isfinite(first[[0, 2]]).all()
    cached = list((tmp_path / "cache").rglob("*.npy"))
    assert len(cached) == 2
    with pytest.warns(InputErrorWarning):
        np.testing.assert_array_equal(embedder.transform(rows), first)


def test_a_process_that_only_embeds_texts_never_reads_the_image_tower(
    exports, tmp_path
):
    _, exported = exports("clip")
    copy = load_model(exported).save_pretrained(tmp_path / "copy")
    handle = load_model(copy)
    handle.encode_texts(LABELS)
    opened = {kind for kind, tower in handle._towers.items() if tower._run}
    assert opened == {"text"}


# -- a deployment without PyTorch ----------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_export_classifies_where_torch_cannot_be_imported(
    backend, exports, images, tmp_path, without_torch
):
    checkpoint, exported = exports("clip", backend=backend)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"image_{i}.jpg"))
        image.save(paths[-1], quality=95)
    expected = (
        CLIPZeroShotClassifier(_reference(checkpoint), candidate_labels=LABELS)
        .fit(None)
        .predict_proba(paths)
    )
    code = (
        "import json, sys\n"
        "from sklearn_clip import CLIPZeroShotClassifier\n"
        "model, labels, paths = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]\n"
        "clf = CLIPZeroShotClassifier(model, candidate_labels=labels).fit(None)\n"
        "proba = clf.predict_proba(paths)\n"
        "import skops.io as sio\n"
        "from sklearn_clip import skops_trusted_types\n"
        "saved = sio.loads(sio.dumps(clf), trusted=skops_trusted_types())\n"
        "assert (saved.predict_proba(paths) == proba).all()\n"
        "assert not any(name.startswith('torch') for name in sys.modules)\n"
        "print(json.dumps(proba.tolist()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(exported), json.dumps(LABELS), *paths],
        capture_output=True,
        text=True,
        timeout=300,
        env=without_torch,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(json.loads(done.stdout), expected, atol=1e-4)


def test_search_and_metrics_run_on_an_export_where_torch_cannot_be_imported(
    exports, images, tmp_path, without_torch
):
    checkpoint, exported = exports("clip")
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"image_{i}.png"))
        image.save(paths[-1])
    expected = (
        CLIPNearestNeighbors(_reference(checkpoint), n_neighbors=3)
        .fit(paths)
        .kneighbors(LABELS, query_modality="text")
    )
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from sklearn_clip import CLIPEmbeddingTransformer, CLIPNearestNeighbors\n"
        "from sklearn_clip.metrics import recall_at_k\n"
        "model, labels, paths = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]\n"
        "search = CLIPNearestNeighbors(model, n_neighbors=3).fit(paths)\n"
        "distances, rows = search.kneighbors(labels, query_modality='text')\n"
        "texts = CLIPEmbeddingTransformer(model, modality='text').fit(labels)\n"
        "texts = texts.transform(labels)\n"
        "recall = recall_at_k(search.embeddings_, texts, [0] * len(paths), k=3)\n"
        "assert not any(name.startswith('torch') for name in sys.modules)\n"
        "print(json.dumps([distances.tolist(), rows.tolist(), recall]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(exported), json.dumps(LABELS), *paths],
        capture_output=True,
        text=True,
        timeout=300,
        env=without_torch,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    distances, rows, recall = json.loads(done.stdout)
    np.testing.assert_array_equal(rows, expected[1])
    np.testing.assert_allclose(distances, expected[0], atol=1e-4)
    assert 0.0 <= recall <= 1.0


# -- load_model(backend=...) on a PyTorch checkpoint ----------------------------


def test_load_model_exports_once_and_again_after_the_weights_change(tmp_path, caplog):
    checkpoint = Path(make_tiny_clip(tmp_path / "model"))
    with caplog.at_level(logging.WARNING, logger="sklearn_clip"):
        first = load_model(checkpoint, backend="onnx")
    assert first.directory == checkpoint / "onnx"
    assert "was missing: exporting it once" in caplog.text
    caplog.clear()
    clear_model_cache()
    with caplog.at_level(logging.WARNING, logger="sklearn_clip"):
        again = load_model(checkpoint, backend="onnx")
    assert caplog.text == "" and again.fingerprint == first.fingerprint
    make_tiny_clip(checkpoint, random_state=1)  # other weights, same folder
    clear_model_cache()
    with caplog.at_level(logging.WARNING, logger="sklearn_clip"):
        renewed = load_model(checkpoint, backend="onnx")
    assert "made from other weights" in caplog.text
    assert renewed.source_model["fingerprint"] == _reference(checkpoint).fingerprint


def test_a_checkpoint_that_cannot_be_written_exports_into_the_cache(
    tmp_path, monkeypatch
):
    checkpoint = Path(make_tiny_clip(tmp_path / "model"))
    monkeypatch.setenv("SKLEARN_CLIP_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr("sklearn_clip._loader.auto_export.writable", lambda path: False)
    handle = load_model(checkpoint, backend="openvino")
    assert (tmp_path / "cache") in handle.directory.parents
    assert not (checkpoint / "openvino").exists()


# -- what is refused, and how ----------------------------------------------------


def test_a_family_that_cannot_be_exported_is_refused_with_the_list(tmp_path):
    refused = [f for f in SUPPORTED_FAMILIES if f not in EXPORT_FAMILIES]
    checkpoint = make_tiny_clip(tmp_path / "model", family=refused[0])
    with pytest.raises(ValueError, match="cannot be exported") as error:
        export_model(checkpoint, tmp_path / "out")
    assert ", ".join(EXPORT_FAMILIES) in str(error.value)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # nothing left behind


def test_the_fine_tuner_refuses_an_exported_model(exports, images):
    _, exported = exports("clip")
    tuner = CLIPContrastiveFinetuner(load_model(exported), max_epochs=1)
    with pytest.raises(ValueError, match="cannot be trained"):
        tuner.fit(images, ["a red circle"] * len(images))


def test_a_changed_export_file_is_refused_naming_it(exports, tmp_path):
    _, exported = exports("clip")
    copy = load_model(exported).save_pretrained(tmp_path / "copy")
    with open(copy / "text_model.onnx", "ab") as file:
        file.write(b"\0")
    with pytest.raises(ValueError, match="'text_model.onnx' was changed"):
        load_model(copy)


def test_export_options_are_checked(exports, tmp_path):
    checkpoint, exported = exports("clip")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_model(checkpoint, exported)
    with pytest.raises(ValueError, match="holds a 'onnx' export, not 'openvino'"):
        load_model(exported, backend="openvino")
    with pytest.raises(ValueError, match="runs on the CPU"):
        load_model(exported, device="cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        export_model(checkpoint, tmp_path / "x", backend="tensorrt")


def test_the_manifest_records_identity_precision_and_versions(exports):
    checkpoint, exported = exports("clip")
    manifest = json.loads((exported / MANIFEST_NAME).read_text())
    assert manifest["source_model"]["source"] == str(checkpoint)
    assert manifest["source_model"]["fingerprint"] == _reference(checkpoint).fingerprint
    assert manifest["precision"] == "float32" and manifest["backend"] == "onnx"
    assert manifest["versions"]["torch"] == torch.__version__.split("+")[0] or (
        manifest["versions"]["torch"].startswith(torch.__version__.split("+")[0])
    )
    assert set(manifest["files"]) >= {"image_model.onnx", "text_model.onnx"}


def test_the_export_command_writes_what_load_model_reads(tmp_path, capsys):
    checkpoint = Path(make_tiny_clip(tmp_path / "model"))
    out = tmp_path / "deploy"
    argv = ["--model", str(checkpoint), "--output", str(out), "--backend", "openvino"]
    argv += ["--quantize", "int8"]
    assert main(["export", *argv]) == 0
    printed = capsys.readouterr()
    assert "openvino int8 export" in printed.out
    # A bar over the long steps: each tower traced, then both converted.
    assert "exporting" in printed.err and "3/3" in printed.err
    assert "tracing the text tower" in printed.err
    handle = load_model(out)
    assert (handle.backend, handle.precision_name) == ("openvino", "int8")
    assert main(["export", *argv]) == 2  # exists: refused before any work
    assert "--overwrite" in capsys.readouterr().err
