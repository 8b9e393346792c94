import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.preprocessing import FunctionTransformer

from sklearn_clip import ModelHandle, load_model, model_cache_info
from sklearn_clip._backends.torch.weights import resolve_device, resolve_dtype


def test_same_source_loads_once(tiny_clip_path):
    before = model_cache_info()["loads"]
    first = load_model(tiny_clip_path)
    second = load_model(tiny_clip_path + "/")
    assert first is second
    assert model_cache_info()["loads"] - before <= 1


def test_handle_survives_clone_by_identity(tiny_clip):
    estimator = FunctionTransformer(kw_args={"model": tiny_clip})
    assert clone(estimator).kw_args["model"] is tiny_clip
    assert clone(tiny_clip, safe=False) is tiny_clip


def test_pickle_is_a_light_reference(tiny_clip_path):
    handle = load_model(tiny_clip_path)
    data = pickle.dumps(handle)
    assert len(data) < 10_000
    assert pickle.loads(data) is handle  # same process: back through the cache


def test_pickle_reloads_in_a_fresh_cache(tiny_clip, request):
    data = pickle.dumps(tiny_clip)
    texts = ["a red circle", "a small blue square"]
    expected = tiny_clip.encode_texts(texts)
    request.getfixturevalue("isolated_cache")
    restored = pickle.loads(data)
    assert restored is not tiny_clip
    np.testing.assert_allclose(restored.encode_texts(texts), expected, atol=1e-6)


def test_in_memory_handle_pickles_its_weights(tiny_clip):
    handle = tiny_clip.with_model(tiny_clip.model)
    restored = pickle.loads(pickle.dumps(handle))
    assert restored.source is None
    np.testing.assert_allclose(
        restored.encode_texts(["a cat"]), handle.encode_texts(["a cat"]), atol=1e-6
    )


def test_uncached_hub_id_fails_with_a_clear_error():
    # In a fresh process without the network: the error, not a minute of
    # retries (the subprocess timeout bounds it; speed itself is not asserted).
    code = (
        "from sklearn_clip import load_model\n"
        "try:\n    load_model('someone/not-a-cached-model')\n"
        "except OSError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        },
    )
    message = out.stdout
    assert "someone/not-a-cached-model" in message
    assert "HF_HUB_OFFLINE" in message and "save_pretrained" in message


def test_offline_flag_fails_without_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="local_files_only"):
        load_model("someone/another-missing-model")


def test_encoders_return_float32_embeddings(tiny_clip, gradient):
    texts = tiny_clip.encode_texts(["a red circle", "a blue square", "a red circle"])
    images = tiny_clip.encode_images([gradient(40, 30, 0), gradient(30, 40, 1)])
    for embeddings in (texts, images):
        assert embeddings.dtype == np.float32
        assert embeddings.shape[1] == tiny_clip.embedding_dim == 32
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(texts[0], texts[2])
    assert tiny_clip.logit_scale == pytest.approx(np.exp(2.6592), rel=1e-4)
    assert tiny_clip.logit_bias is None


def test_text_encoding_matches_get_text_features(tiny_clip):
    texts = ["a red circle", "something purple on the left side of a picture"]
    ours = tiny_clip.encode_texts(texts, normalize=False)
    batch = tiny_clip.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = tiny_clip.model.get_text_features(**batch)
    theirs = (out if isinstance(out, torch.Tensor) else out.pooler_output).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_siglip_has_a_bias_and_pads_to_the_context(tiny_siglip):
    assert tiny_siglip.is_sigmoid and tiny_siglip.logit_bias is not None
    one = tiny_siglip.encode_texts(["a dog"])
    both = tiny_siglip.encode_texts(["a dog", "a very much longer caption here"])
    np.testing.assert_allclose(one[0], both[0], atol=1e-6)


def test_device_and_dtype_resolution():
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("float8", torch.device("cpu"))
    with pytest.raises(TypeError, match="hub id"):
        load_model(42)


def test_repr_is_short(tiny_clip):
    assert len(repr(tiny_clip)) < 200 and "CLIPModel" in repr(tiny_clip)
    assert isinstance(tiny_clip, ModelHandle)


# -- torch.compile of the image forward pass ------------------------------------
def _compiled_matches_eager(path, image_files, options):
    # float32 on every CPU: the two are compared at 1e-5.
    eager = load_model(path, device="cpu", dtype="float32")
    compiled = load_model(path, device="cpu", dtype="float32", compile=options)
    expected_options = {} if options is True else options
    assert compiled is not eager and compiled.compile_options == expected_options
    again = load_model(path, device="cpu", dtype="float32", compile=options)
    assert again is compiled
    files = [str(p) for p in image_files.values()]
    np.testing.assert_allclose(
        compiled.encode_images(files), eager.encode_images(files), atol=1e-5
    )
    assert compiled._compiled_image_features is not None
    assert eager._compiled_image_features is None
    # A pickle reloads with the same options; clones share the handle.
    assert pickle.loads(pickle.dumps(compiled)) is compiled
    return compiled


def test_compile_runs_the_image_forward_through_torch_compile(
    tiny_clip_path, image_files
):
    # The "eager" backend traces with dynamo but builds no kernels: fast.
    handle = _compiled_matches_eager(tiny_clip_path, image_files, {"backend": "eager"})
    # Text encoding stays eager and unchanged.
    texts = ["a red circle", "a small blue square"]
    np.testing.assert_allclose(
        handle.encode_texts(texts),
        load_model(tiny_clip_path, device="cpu", dtype="float32").encode_texts(texts),
        atol=1e-6,
    )
    with pytest.raises(TypeError, match="compile must be True, False or a dict"):
        load_model(tiny_clip_path, compile="yes")


@pytest.mark.slow
def test_compile_with_inductor_matches_eager(tiny_clip_path, image_files):
    _compiled_matches_eager(tiny_clip_path, image_files, True)


def test_loading_and_saving_draw_no_progress_bars(tmp_path, capfd, isolated_cache):
    from transformers.utils import logging

    from sklearn_clip.toy import make_tiny_clip

    logging.enable_progress_bar()  # as a user's session has it
    try:
        capfd.readouterr()
        path = make_tiny_clip(tmp_path / "model", family="siglip")
        handle = load_model(path, device="cpu")
        handle.save_pretrained(tmp_path / "again")
        load_model(tmp_path / "again", device="cpu")
        load_model(make_tiny_clip(tmp_path / "blip", family="blip"), device="cpu")
        err = capfd.readouterr().err
    finally:
        logging.disable_progress_bar()
    assert "Loading weights" not in err and "Writing model shards" not in err
    assert "within the vocabulary" not in err  # no noise about default configs
    assert "deprecated" not in err  # nor BlipModel's announcement


# -- weights that are refused ------------------------------------------------


def _damaged_copy(tiny_clip_path, tmp_path, edit):
    """A copy of the tiny model whose weights ``edit(state)`` changed."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(tiny_clip_path, tmp_path / "damaged")
    weights = folder / "model.safetensors"
    state = load_file(weights)
    edit(state)
    save_file(state, weights, metadata={"format": "pt"})
    return folder


def test_a_checkpoint_missing_a_tensor_is_refused_naming_it(tiny_clip_path, tmp_path):
    name = "visual_projection.weight"
    folder = _damaged_copy(tiny_clip_path, tmp_path, lambda state: state.pop(name))
    with pytest.raises(OSError, match="lack 1 tensor") as error:
        load_model(folder, device="cpu")
    assert name in str(error.value) and "model.safetensors" in str(error.value)


def test_non_finite_weights_are_refused_naming_the_tensor(tiny_clip_path, tmp_path):
    name = "text_projection.weight"

    def poison(state):
        state[name][0, 0] = float("nan")

    folder = _damaged_copy(tiny_clip_path, tmp_path, poison)
    with pytest.raises(ValueError, match="NaN or infinite") as error:
        load_model(folder, device="cpu")
    assert name in str(error.value)


def test_a_truncated_weights_file_is_refused_naming_it(tiny_clip_path, tmp_path):
    folder = _damaged_copy(tiny_clip_path, tmp_path, lambda state: None)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(OSError, match="is damaged") as error:
        load_model(folder, device="cpu")
    assert "model.safetensors" in str(error.value) and str(folder) in str(error.value)


def test_the_cli_reports_a_truncated_checkpoint_in_one_line(
    tiny_clip_path, tmp_path, capsys
):
    from sklearn_clip.cli import main

    folder = _damaged_copy(tiny_clip_path, tmp_path, lambda state: None)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.png")
    output = tmp_path / "out.npy"
    argv = ["embed", "--model", str(folder), "--images", str(images)]
    status = main([*argv, "--output", str(output)])
    error = capsys.readouterr().err
    assert status == 2 and not output.exists()
    assert error.count("\n") == 1 and "model.safetensors" in error
    assert "Traceback" not in error
