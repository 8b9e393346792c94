"""open_clip checkpoints load as transformers models equal to open_clip's own.

The reference is open_clip itself (imported beside a torchvision stand-in,
in the tests only: tests/models/open_clip_reference.py): its model, transform
and tokenizer read back from each tiny checkpoint it wrote.
"""

import fnmatch
import json
import re
import shutil

import huggingface_hub
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from sklearn_clip import load_model
from sklearn_clip._backends.torch.tensors import pixel_values
from sklearn_clip._encoding.tokens import token_ids
from sklearn_clip._models.loading import HUB_PATTERNS
from sklearn_clip._models.open_clip import CONFIG_NAME, WEIGHTS_NAME
from sklearn_clip.datasets import make_photo
from tests.conftest import grey_levels
from tests.models.open_clip_reference import CONFIGS, SIGLIP_CONFIGS, open_clip_module

pytestmark = pytest.mark.usefixtures("one_torch_thread", "float32_module")

NAMES = [*CONFIGS, *SIGLIP_CONFIGS]
FAMILY = dict.fromkeys(CONFIGS, "clip") | dict.fromkeys(SIGLIP_CONFIGS, "siglip")
TEXTS = [
    "a photo of a cat",
    "A Red, CIRCLE!!  on   the\tleft.",
    "naïve café: 3 dogs & 12 cats (maybe)",
    "東京の猫 🐱 emoji",
    "it’s a “quoted” caption",  # curly quotes, which ftfy uncurls
    "  leading and trailing spaces  ",
    " ".join(["a very long caption"] * 40),  # truncated at the context
]


def _photos():
    sizes = [(40, 60), (64, 64), (70, 33), (33, 90), (51, 52)]
    return [
        Image.fromarray(make_photo(w, h, random_state=i))
        for i, (h, w) in enumerate(sizes)
    ]


@pytest.fixture(scope="module")
def handles(open_clip_checkpoints):
    return {
        name: load_model(str(ref["path"]), device="cpu", dtype="float32")
        for name, ref in open_clip_checkpoints.items()
    }


@pytest.mark.parametrize("name", NAMES)
def test_image_embeddings_equal_open_clips(name, open_clip_checkpoints, handles):
    ref, handle = open_clip_checkpoints[name], handles[name]
    assert handle.family == FAMILY[name]
    pixels = torch.stack([ref["transform"](image) for image in _photos()])
    with torch.no_grad():
        theirs = ref["model"].encode_image(pixels)
        ours = handle.image_features(pixels)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore:1 text\\(s\\) are longer")
@pytest.mark.parametrize("name", NAMES)
def test_text_embeddings_equal_open_clips(name, open_clip_checkpoints, handles):
    # Our tokenizer and forward pass against open_clip's tokenizer and forward.
    ref, handle = open_clip_checkpoints[name], handles[name]
    with torch.no_grad():
        theirs = ref["model"].encode_text(ref["tokenizer"](TEXTS)).numpy()
    ours = handle.encode_texts(TEXTS, normalize=False)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def _assert_same_tokens(handle, theirs):
    """Our ids equal open_clip's up to each text's end; the padding is the
    handle's pad id. Returns our ids and mask."""
    ours, mask = token_ids(handle, TEXTS)
    encoded = handle.tokenizer(
        TEXTS, truncation=True, max_length=handle.context_length
    )["input_ids"]
    for row, length in enumerate(len(ids) for ids in encoded):
        np.testing.assert_array_equal(ours[row, :length], theirs[row, :length])
        assert (ours[row, length:] == handle.pad_token_id).all()
    return ours, mask


@pytest.mark.filterwarnings("ignore:1 text\\(s\\) are longer")
@pytest.mark.parametrize("name", NAMES)
def test_token_ids_equal_open_clips(name, open_clip_checkpoints, handles):
    ref, handle = open_clip_checkpoints[name], handles[name]
    theirs = ref["tokenizer"](TEXTS).numpy()  # padded with open_clip's pad id
    ours, mask = _assert_same_tokens(handle, theirs)
    attends_to_padding = name == "mobileclip-text" or FAMILY[name] == "siglip"
    assert (mask is None) == attends_to_padding == handle.pad_to_max_length
    if attends_to_padding:  # the padding too is open_clip's
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("name", NAMES)
def test_preprocessing_is_open_clips(name, open_clip_checkpoints, handles):
    ref, handle = open_clip_checkpoints[name], handles[name]
    steps = {type(step).__name__: step for step in ref["transform"].transforms}
    config = handle.image_config
    resize, normalize = steps["Resize"], steps["Normalize"]
    assert config.size == (
        resize.size if isinstance(resize.size, int) else tuple(resize.size)
    )
    assert config.resample == {"bicubic": 3, "bilinear": 2}[resize.interpolation.value]
    crop = steps.get("CenterCrop")
    assert config.crop == (crop.size if crop is not None else None)
    np.testing.assert_allclose(config.mean, normalize.mean, rtol=1e-7)
    np.testing.assert_allclose(config.std, normalize.std, rtol=1e-7)
    for image in _photos():
        theirs = ref["transform"](image)[None]
        ours = pixel_values([image], config)
        # Resized by PyTorch's kernel against Pillow's: a grey level or so.
        levels = grey_levels(ours - theirs, config)
        assert levels.max().item() < 3.5, image.size
        assert levels.mean().item() < 0.5, image.size


def test_the_crop_offsets_are_torchvisions(open_clip_checkpoints, handles):
    # 70 x 33 resized to a 32-pixel short side is 67 tall: 35 pixels to crop,
    # whose half torchvision rounds to 18 (transformers' Pillow crop floors).
    ref, handle = open_clip_checkpoints["vit-gelu-64"], handles["vit-gelu-64"]
    image = Image.fromarray(make_photo(33, 70, random_state=3))
    theirs = ref["transform"](image)[None]
    ours = pixel_values([image], handle.image_config)
    assert handle.image_config.crop_round
    assert grey_levels(ours - theirs, handle.image_config).mean().item() < 0.5


def test_a_causal_reading_of_the_bidirectional_text_would_be_wrong(handles):
    # The trap the conversion avoids: transformers' own CLIP text tower, run
    # causally over the same weights, gives unrelated embeddings.
    handle = handles["mobileclip-text"]
    ids, _ = token_ids(handle, TEXTS[:3])
    ids = torch.from_numpy(ids)
    model = handle.model
    with torch.no_grad():
        right = model.get_text_features(input_ids=ids).pooler_output
        model.set_attn_implementation("sdpa")
        try:
            causal = model.get_text_features(input_ids=ids).pooler_output
        finally:
            model.set_attn_implementation("sklearn_clip_bidirectional")
    cosine = torch.nn.functional.cosine_similarity(right, causal)
    assert cosine.max().item() < 0.9


# -- what does not load ---------------------------------------------------------
LOADS = r"What loads from open_clip's layout: built-in ViT image tower.*-> siglip\.$"


def _write(folder, model_cfg, weights=None, preprocess=None):
    folder.mkdir()
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess or {}}
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    save_file(weights or {"logit_scale": torch.zeros(())}, str(folder / WEIGHTS_NAME))
    return folder


def _builtin_config(name):
    open_clip = open_clip_module()
    return json.loads(json.dumps(open_clip.get_model_config(name)))


@pytest.mark.parametrize(
    "name, reason",
    [
        ("MobileCLIP2-S0", r"the timm image tower 'fastvit_mci0'"),
        ("convnext_base", r"the timm image tower 'convnext_base'"),
        ("EVA02-B-16", r"the timm image tower 'eva02_base_patch16_clip_224"),
        ("PE-Core-B-16", r"the timm image tower 'vit_pe_core_base_patch16_224'"),
        ("coca_ViT-B-32", r"a CoCa model"),
        ("xlm-roberta-base-ViT-B-32", r"a Hugging Face text tower"),
        ("ViT-L-14-CLIPA", r"pre-LayerNorm"),
        ("RN50", r"a ResNet image tower"),
        ("ViT-M-16-alt", r"LayerScale"),
    ],
)
def test_what_does_not_map_is_refused_in_one_line(name, reason, tmp_path):
    folder = _write(tmp_path / name, _builtin_config(name))
    with pytest.raises(ValueError) as error:
        load_model(str(folder))
    message = str(error.value)
    assert "\n" not in message
    assert f"{str(folder)!r} is an open_clip checkpoint" in message
    assert re.search(reason, message), message
    assert re.search(LOADS, message), message


def test_a_config_the_converter_does_not_know_is_refused(tmp_path):
    config = _builtin_config("ViT-B-32") | {"rope_cfg": {"theta": 100}}
    folder = _write(tmp_path / "unknown", config)
    with pytest.raises(ValueError, match=r"does not know in model_cfg: \['rope_cfg'\]"):
        load_model(str(folder))


def test_mean_pooling_is_refused_naming_why(tmp_path):
    config = _builtin_config("ViT-B-32")
    config["vision_cfg"]["pool_type"] = "avg"
    with pytest.raises(
        ValueError, match=r"image pooling 'avg' \(transformers' CLIPModel"
    ):
        load_model(str(_write(tmp_path / "avg", config)))


def test_pickled_only_weights_are_refused_naming_the_safetensors_file(
    open_clip_checkpoints, tmp_path
):
    folder = tmp_path / "pickled"
    source = open_clip_checkpoints["vit-gelu-64"]["path"]
    shutil.copytree(source, folder)
    state = open_clip_checkpoints["vit-gelu-64"]["model"].state_dict()
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    (folder / WEIGHTS_NAME).unlink()
    with pytest.raises(OSError) as error:
        load_model(str(folder))
    message = str(error.value)
    assert "\n" not in message
    assert "found open_clip_pytorch_model.bin" in message
    assert f"Ask for {WEIGHTS_NAME}" in message


def test_weights_that_do_not_fit_the_config_are_refused(
    open_clip_checkpoints, tmp_path
):
    folder = tmp_path / "misfit"
    shutil.copytree(open_clip_checkpoints["vit-gelu-64"]["path"], folder)
    saved = json.loads((folder / CONFIG_NAME).read_text())
    saved["model_cfg"]["vision_cfg"]["layers"] = 3  # the weights hold 2
    (folder / CONFIG_NAME).write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"do not fit the vit layout \(16 missing"):
        load_model(str(folder))


def test_a_missing_clip_bpe_vocabulary_is_named(open_clip_checkpoints, tmp_path):
    folder = tmp_path / "no-vocab"
    shutil.copytree(open_clip_checkpoints["vit-gelu-64"]["path"], folder)
    (folder / "bpe_simple_vocab_16e6.txt.gz").unlink()
    with pytest.raises(OSError) as error:
        load_model(str(folder))
    message = str(error.value)
    assert "\n" not in message
    assert "vocab.json and merges.txt" in message
    assert "bpe_simple_vocab_16e6.txt.gz" in message


@pytest.mark.filterwarnings("ignore:1 text\\(s\\) are longer")
def test_a_transformers_tokenizer_in_the_folder_is_used(
    open_clip_checkpoints, tmp_path
):
    # A folder with the CLIP BPE's transformers files (as LAION's repos hold)
    # needs no open_clip vocabulary file; the ids are the same.
    source = open_clip_checkpoints["vit-gelu-64"]["path"]
    folder = tmp_path / "hf-tokenizer"
    shutil.copytree(source, folder)
    (folder / "bpe_simple_vocab_16e6.txt.gz").unlink()
    handle = load_model(str(source), device="cpu", dtype="float32")
    handle.tokenizer.save_pretrained(folder)
    again = load_model(str(folder), device="cpu", dtype="float32")
    reference = open_clip_checkpoints["vit-gelu-64"]["tokenizer"](TEXTS).numpy()
    _assert_same_tokens(again, reference)


def test_loading_says_the_model_is_saved_in_transformers_layout(
    open_clip_checkpoints, tmp_path, caplog
):
    folder = tmp_path / "logged"
    shutil.copytree(open_clip_checkpoints["siglip-v1"]["path"], folder)
    with caplog.at_level("INFO", logger="sklearn_clip"):
        load_model(str(folder), device="cpu", dtype="float32")
    assert "open_clip's timm-siglip layout, converted to SiglipModel" in caplog.text
    assert "in transformers' layout" in caplog.text


def test_a_folder_in_both_layouts_loads_transformers_files(tiny_clip_path, tmp_path):
    folder = tmp_path / "both"
    shutil.copytree(tiny_clip_path, folder)
    (folder / CONFIG_NAME).write_text(json.dumps({"model_cfg": {"embed_dim": 1}}))
    handle = load_model(str(folder), device="cpu", dtype="float32")
    assert handle.embedding_dim == load_model(tiny_clip_path).embedding_dim


def test_a_hub_repo_in_open_clips_layout_loads_from_the_cache(
    open_clip_checkpoints, handles, tmp_path, monkeypatch
):
    source = open_clip_checkpoints["vit-quickgelu-64"]["path"]
    wanted = [p.name for p in source.iterdir()]
    for name in wanted:  # the open_clip files, and open_clip's vocabulary file
        assert any(fnmatch.fnmatch(name, pattern) for pattern in HUB_PATTERNS)
    assert not any(
        fnmatch.fnmatch("open_clip_pytorch_model.bin", p) for p in HUB_PATTERNS
    )
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--open-clip-model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(source, repo / "snapshots" / commit)
    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub")
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    handle = load_model("someone/open-clip-model", device="cpu", dtype="float32")
    assert handle.source == "someone/open-clip-model"
    np.testing.assert_array_equal(
        handle.encode_texts(TEXTS[:3]),
        handles["vit-quickgelu-64"].encode_texts(TEXTS[:3]),
    )


def test_weights_keep_the_precision_they_are_stored_in(open_clip_checkpoints, tmp_path):
    source = open_clip_checkpoints["vit-gelu-64"]["path"]
    folder = tmp_path / "bf16"
    shutil.copytree(source, folder)
    weights = load_file(str(source / WEIGHTS_NAME))
    save_file({k: v.bfloat16() for k, v in weights.items()}, str(folder / WEIGHTS_NAME))
    handle = load_model(str(folder), device="cpu", dtype="float32")
    assert handle.stored_dtype == torch.bfloat16
    assert handle.dtype == torch.float32
    saved = load_file(
        str(handle.save_pretrained(tmp_path / "saved") / "model.safetensors")
    )
    assert {t.dtype for t in saved.values() if t.is_floating_point()} == {
        torch.bfloat16
    }
