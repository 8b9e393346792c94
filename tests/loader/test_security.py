"""Security defaults: no pickle is read, no shipped code runs, no global is touched.

Each "planted" file below would leave a sentinel directory behind if it were
ever executed; each test checks that the sentinel stays absent, and then runs
the planted file on purpose to show that it was armed.
"""

import ast
import fnmatch
import json
import os
import runpy
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
import transformers
from PIL import Image, ImageFile

import sklearn_clip
from sklearn_clip import load_model
from sklearn_clip._backends.torch.loading import handle_from_directory
from sklearn_clip._encoding.encode import encode_images
from sklearn_clip._models import loading as _loading


class _Planted:
    """Unpickling this creates ``path``: proof that a pickle was executed."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _plant_pickle(path, sentinel):
    torch.save(
        {"vision_model.embeddings.patch_embedding.weight": _Planted(sentinel)}, path
    )


def _plant_code(path, sentinel):
    path.write_text(f"import os\nos.mkdir({str(sentinel)!r})\n")


def _copy_model(source, destination):
    shutil.copytree(source, destination)
    return destination


@pytest.fixture
def torch_load_calls(monkeypatch):
    """Every call of ``torch.load`` while the test runs."""
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    # Even with pickle loading forced back on, nothing may be unpickled.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    return calls


def _prove_armed(weights, sentinel):
    torch.serialization.load(weights, weights_only=False)
    assert sentinel.exists()


# -- pickles -----------------------------------------------------------------------


def test_a_pickle_only_checkpoint_is_refused_unread(
    tiny_clip_path, tmp_path, torch_load_calls
):
    folder = _copy_model(tiny_clip_path, tmp_path / "model")
    (folder / "model.safetensors").unlink()
    sentinel = tmp_path / "unpickled"
    _plant_pickle(folder / "pytorch_model.bin", sentinel)
    with pytest.raises(
        OSError, match=r"no safetensors weights \(found pytorch_model.bin\)"
    ):
        load_model(folder)
    assert not sentinel.exists()
    assert torch_load_calls == []
    _prove_armed(folder / "pytorch_model.bin", sentinel)


def test_a_pickle_next_to_safetensors_is_never_read(
    tiny_clip, tiny_clip_path, tmp_path, torch_load_calls
):
    folder = _copy_model(tiny_clip_path, tmp_path / "model")
    sentinel = tmp_path / "unpickled"
    for name in ("pytorch_model.bin", "model.pt", "training_args.bin"):
        _plant_pickle(folder / name, sentinel)
    handle = load_model(folder, dtype="float32")
    assert not sentinel.exists()
    assert torch_load_calls == []
    texts = ["a red circle", "a blue square"]
    np.testing.assert_allclose(
        handle.encode_texts(texts), tiny_clip.encode_texts(texts), atol=1e-6
    )
    _prove_armed(folder / "pytorch_model.bin", sentinel)


def test_a_pickle_in_a_cached_hub_snapshot_is_never_read(
    tiny_clip_path, tmp_path, monkeypatch, torch_load_calls
):
    # The Hugging Face cache layout: refs/main names the snapshot to use.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--planted-clip"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = _copy_model(tiny_clip_path, repo / "snapshots" / commit)
    sentinel = tmp_path / "unpickled"
    _plant_pickle(snapshot / "pytorch_model.bin", sentinel)
    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub")
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    handle = load_model("someone/planted-clip")
    assert handle.source == "someone/planted-clip"
    assert not sentinel.exists()
    assert torch_load_calls == []
    # Nor would a download fetch a pickle in the first place.
    for name in ("pytorch_model.bin", "model.pt", "model.ckpt", "weights.pkl"):
        assert not any(fnmatch.fnmatch(name, p) for p in _loading.HUB_PATTERNS)


def test_loading_asks_transformers_for_safe_options_only(tiny_clip_path, monkeypatch):
    seen = {}
    autos = (
        transformers.AutoModel,
        transformers.AutoTokenizer,
        transformers.AutoImageProcessor,
    )
    for auto in autos:
        real = auto.from_pretrained

        def spy(*args, _real=real, _name=auto.__name__, **kwargs):
            seen[_name] = kwargs
            return _real(*args, **kwargs)

        monkeypatch.setattr(auto, "from_pretrained", spy)
    handle_from_directory(tiny_clip_path, torch.device("cpu"), None)
    assert seen["AutoModel"]["use_safetensors"] is True
    assert seen["AutoImageProcessor"]["local_files_only"] is True
    for name in ("AutoModel", "AutoTokenizer"):
        assert seen[name]["trust_remote_code"] is False
        assert seen[name]["local_files_only"] is True


# -- code shipped with a checkpoint -----------------------------------------------


def _plant_remote_code(folder, sentinel, model_type=None):
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "configuration_planted.PlantedConfig",
        "AutoModel": "modeling_planted.PlantedModel",
    }
    if model_type is not None:
        config["model_type"] = model_type
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer["auto_map"] = {"AutoTokenizer": ["tokenization_planted.Planted", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    for name in ("configuration", "modeling", "tokenization"):
        _plant_code(folder / f"{name}_planted.py", sentinel)


def test_remote_code_of_a_known_model_type_is_ignored(tiny_clip_path, tmp_path):
    folder = _copy_model(tiny_clip_path, tmp_path / "model")
    sentinel = tmp_path / "executed"
    _plant_remote_code(folder, sentinel)
    handle = load_model(folder)
    assert type(handle.model) is transformers.CLIPModel
    assert not sentinel.exists()
    runpy.run_path(str(folder / "modeling_planted.py"))
    assert sentinel.exists()


def test_remote_code_of_an_unknown_model_type_is_refused(tiny_clip_path, tmp_path):
    folder = _copy_model(tiny_clip_path, tmp_path / "model")
    sentinel = tmp_path / "executed"
    _plant_remote_code(folder, sentinel, model_type="planted-clip")
    with pytest.raises(ValueError, match="never runs code shipped with a checkpoint"):
        load_model(folder)
    assert not sentinel.exists()
    runpy.run_path(str(folder / "configuration_planted.py"))
    assert sentinel.exists()


# -- process-wide settings ---------------------------------------------------------


def _globals():
    return (
        Image.MAX_IMAGE_PIXELS,
        ImageFile.LOAD_TRUNCATED_IMAGES,
        list(warnings.filters),
        dict(os.environ),
    )


def test_encoding_changes_no_process_wide_setting(tiny_clip, gradient, tmp_path):
    truncated = tmp_path / "truncated.png"
    data = (Path(__file__).parents[1] / "conftest.py").read_bytes()  # not an image
    truncated.write_bytes(b"\x89PNG\r\n\x1a\n" + data[:100])
    rows = [gradient(20, 20, 0), str(truncated), None, np.full((4, 4), 2.0)]
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        before = _globals()
        encode_images(tiny_clip, rows, on_error="nan")
        with pytest.raises(ValueError):
            encode_images(tiny_clip, rows, on_error="raise")
        tiny_clip.encode_texts(["", "a red circle " * 40, "一只猫"])
        after = _globals()
    assert after == before


_IMPORT_CHECK = textwrap.dedent(
    """
    import importlib, json, os, pkgutil, sys, warnings

    # The dependencies first, and a load through transformers itself: what
    # they set when imported is theirs, not the package's.
    import numpy, pandas, scipy.special, sklearn.base, torch, tqdm.auto
    import PIL.Image, PIL.ImageFile
    import transformers
    from transformers import AutoModel, AutoTokenizer

    path = sys.argv[1]
    AutoModel.from_pretrained(path, use_safetensors=True, local_files_only=True)
    AutoTokenizer.from_pretrained(path, local_files_only=True)

    def state():
        return [
            PIL.Image.MAX_IMAGE_PIXELS,
            PIL.ImageFile.LOAD_TRUNCATED_IMAGES,
            [repr(f) for f in warnings.filters],
            dict(os.environ),
        ]

    before = state()
    import sklearn_clip
    for module in pkgutil.iter_modules(sklearn_clip.__path__):
        importlib.import_module("sklearn_clip." + module.name)
    after_import = state()
    handle = sklearn_clip.load_model(path)
    handle.encode_images([numpy.zeros((9, 9, 3), numpy.uint8), b"junk"], on_error="nan")
    handle.encode_texts(["a red circle"])
    after_use = state()
    print(json.dumps({"before": before, "import": after_import, "use": after_use}))
    """
)


def test_importing_and_using_the_package_changes_no_process_wide_setting(
    tiny_clip_path,
):
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK, tiny_clip_path],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    states = json.loads(result.stdout.strip().splitlines()[-1])
    for moment in ("import", "use"):
        assert states[moment] == states["before"], moment


# Package code that would weaken a default for the whole process or for loading.
_FORBIDDEN_KEYWORDS = {
    ("trust_remote_code", True),
    ("weights_only", False),
    ("use_safetensors", False),
    ("safe_serialization", False),
}
_FORBIDDEN_ATTRIBUTES = {"MAX_IMAGE_PIXELS", "LOAD_TRUNCATED_IMAGES"}
_FORBIDDEN_STRINGS = {
    "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",
    "TORCH_FORCE_WEIGHTS_ONLY_LOAD",
}


def test_no_package_code_weakens_a_security_default():
    problems = []
    for path in sorted(Path(sklearn_clip.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.keyword) and isinstance(node.value, ast.Constant):
                if (node.arg, node.value.value) in _FORBIDDEN_KEYWORDS:
                    problems.append(f"{where} {node.arg}={node.value.value}")
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            for target in targets:
                if getattr(target, "attr", None) in _FORBIDDEN_ATTRIBUTES:
                    problems.append(f"{where} assigns {target.attr}")
            if isinstance(node, ast.Constant) and node.value in _FORBIDDEN_STRINGS:
                problems.append(f"{where} mentions {node.value}")
    assert problems == []
