"""The family table says what each family's real model does.

Every row of :data:`sklearn_clip._models.families.FAMILY_TABLE` is checked against
the family's tiny model (built by :func:`sklearn_clip.toy.make_tiny_clip`)
and against transformers' own choices (its auto mappings and its zero-shot
pipeline); and nothing else in the package decides by family name or by
probing a model for attributes.
"""

import ast
import dataclasses
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image
from transformers.activations import QuickGELUActivation
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_MAPPING_NAMES,
)
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

import sklearn_clip
from sklearn_clip._backends.torch.forward import logit_scale
from sklearn_clip._models import loading as _loading
from sklearn_clip._models.families import FAMILY_TABLE, Family, family_of
from sklearn_clip._train.trainable import _lora_targets
from sklearn_clip.toy import make_tiny_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread", "float32_module")

FAMILY_TYPES = [family.model_type for family in FAMILY_TABLE]
# Fields a row may leave at None, each for a stated reason (see Family).
OPTIONAL = {"bias", "text_length", "lora_layers", "load_noise"}
SHORTCUTS = {"class_token", "prefix", "quick_gelu"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``(directory, model)`` of each family's tiny checkpoint, built once."""
    made = {}

    def build(model_type):
        if model_type not in made:
            folder = tmp_path_factory.mktemp(model_type)
            directory = make_tiny_clip(folder, family=model_type)
            with _loading.quiet_transformers():
                model = transformers.AutoModel.from_pretrained(directory).eval()
            made[model_type] = directory, model
        return made[model_type]

    return build


@pytest.fixture(scope="module")
def image(gradient):
    return Image.fromarray(gradient(40, 30, 0))


def test_the_tables_families_are_the_supported_ones():
    assert tuple(FAMILY_TYPES) == _loading.SUPPORTED_FAMILIES
    assert len(set(FAMILY_TYPES)) == len(FAMILY_TYPES)
    assert set(FAMILY_TYPES) <= set(
        MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES
    )
    assert _loading.SIGMOID_FAMILIES == tuple(
        f.model_type for f in FAMILY_TABLE if f.sigmoid
    )
    assert _loading.FINETUNE_FAMILIES == tuple(
        f.model_type for f in FAMILY_TABLE if f.finetune
    )


def test_every_field_is_set_by_every_row():
    # No defaults: a new row cannot leave a fact out by accident.
    assert all(
        f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        for f in dataclasses.fields(Family)
    )


@pytest.mark.parametrize("family", FAMILY_TABLE, ids=FAMILY_TYPES)
def test_rows_are_complete_and_consistent(family):
    for field in dataclasses.fields(Family):
        value = getattr(family, field.name)
        if value is None:
            assert field.name in OPTIONAL, field.name
        elif isinstance(value, str | tuple) and field.name != "fast_paths":
            assert value and all(value), field.name
    assert (family.bias is not None) == family.sigmoid
    assert (family.text_length is not None) == family.pad_to_max_length
    assert family.fast_paths <= SHORTCUTS
    assert family_of(family.model_type) is family


def test_an_unknown_family_is_refused_with_the_list():
    with pytest.raises(ValueError, match="'clipseg'.*clip, metaclip_2, siglip"):
        family_of("clipseg")


@pytest.mark.parametrize("family", FAMILY_TABLE, ids=FAMILY_TYPES)
def test_classes_are_transformers_own(family, tiny):
    _, model = tiny(family.model_type)
    assert family.model_class == MODEL_MAPPING_NAMES[family.model_type]
    assert type(model).__name__ == family.model_class
    assert family_of(model) is family
    assert family.processor == PROCESSOR_MAPPING_NAMES[family.model_type]
    assert hasattr(transformers, family.processor)
    if family.load_noise is not None:
        assert importlib.util.find_spec(family.load_noise[0]) is not None


@pytest.mark.parametrize("family", FAMILY_TABLE, ids=FAMILY_TYPES)
def test_temperature_and_bias_are_the_models_scalars(family, tiny):
    _, model = tiny(family.model_type)
    top_level = {n for n, _ in model.named_parameters() if "." not in n}
    assert top_level == set(family.temperature_names)


def _inputs(directory, image, texts):
    """The family's own image inputs and token ids, as its processor makes them."""
    processor = transformers.AutoProcessor.from_pretrained(directory)
    pixels = processor.image_processor(images=[image], return_tensors="pt")
    tokens = processor.tokenizer(texts, padding=True, return_tensors="pt")
    return dict(pixels), dict(tokens)


@pytest.mark.parametrize("family", FAMILY_TABLE, ids=FAMILY_TYPES)
def test_scale_and_bias_reproduce_the_models_logits(family, tiny, image):
    directory, model = tiny(family.model_type)
    pixels, tokens = _inputs(directory, image, ["a red circle", "a big blue square"])
    with torch.no_grad():
        outputs = model(**pixels, **tokens)
        images = torch.nn.functional.normalize(outputs.image_embeds, dim=-1)
        texts = torch.nn.functional.normalize(outputs.text_embeds, dim=-1)
        expected = logit_scale(model) * images @ texts.T
        if family.bias is not None:
            expected = expected + getattr(model, family.bias)
    torch.testing.assert_close(outputs.logits_per_image, expected)


@pytest.mark.parametrize("family", FAMILY_TABLE, ids=FAMILY_TYPES)
def test_scoring_and_padding_are_the_pipelines(family, tiny, image):
    directory, _ = tiny(family.model_type)
    with _loading.quiet_transformers():
        pipe = transformers.pipeline(
            "zero-shot-image-classification", model=directory, device="cpu"
        )
    inputs = pipe.preprocess(
        image, candidate_labels=["a cat"], hypothesis_template="{}"
    )
    width = inputs["text_inputs"][0]["input_ids"].shape[1]
    natural = pipe.tokenizer(["a cat"], return_tensors="pt")["input_ids"].shape[1]
    assert width == (family.text_length if family.pad_to_max_length else natural)
    logits = torch.tensor([[1.5, -0.5]])
    scores = [
        r["score"]
        for r in pipe.postprocess({"candidate_labels": ["a", "b"], "logits": logits})
    ]
    sigmoid = torch.sigmoid(logits[0]).tolist()
    assert np.allclose(scores, sigmoid) == family.sigmoid


@pytest.mark.parametrize("family", FAMILY_TABLE, ids=FAMILY_TYPES)
def test_the_text_context_counts_the_position_offset(family, tiny):
    _, model = tiny(family.model_type)
    text = model.config.text_config
    usable = text.max_position_embeddings
    if family.position_offset:
        usable -= text.pad_token_id + 1
    for length, fits in [(usable, True), (usable + 1, False)]:
        ids = torch.full((1, length), 5)
        try:
            with torch.no_grad():
                model.get_text_features(
                    input_ids=ids, attention_mask=torch.ones_like(ids)
                )
        except (IndexError, RuntimeError, ValueError):
            assert not fits, length
        else:
            assert fits, length


def _prefixed(names, prefixes):
    return {n for n in names if n.startswith(prefixes)}


@pytest.mark.parametrize("family", FAMILY_TABLE, ids=FAMILY_TYPES)
def test_tower_prefixes_partition_the_parameters(family, tiny):
    _, model = tiny(family.model_type)
    names = {n for n, _ in model.named_parameters()}
    for prefix in family.image_tower + family.text_tower + family.projections:
        assert _prefixed(names, (prefix,)), prefix
    image, text = (
        _prefixed(names, family.image_tower),
        _prefixed(names, family.text_tower),
    )
    assert not image & text
    assert image | text | set(family.temperature_names) == names
    assert _prefixed(names, family.projections) <= image | text


def _trained_by(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {
        n for n, p in model.named_parameters() if p.grad is not None and p.grad.any()
    }


@pytest.mark.parametrize("family", FAMILY_TABLE, ids=FAMILY_TYPES)
def test_each_tower_is_what_embeds_its_modality(family, tiny, image):
    directory, model = tiny(family.model_type)
    pixels, tokens = _inputs(directory, image, ["a red circle"])
    features = model.get_image_features(**pixels)
    image_params = _trained_by(model, _pooled(features).square().sum())
    features = model.get_text_features(**tokens)
    text_params = _trained_by(model, _pooled(features).square().sum())
    model.zero_grad(set_to_none=True)
    assert image_params and image_params <= _prefixed(image_params, family.image_tower)
    assert text_params and text_params <= _prefixed(text_params, family.text_tower)


def _pooled(output):
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@pytest.mark.parametrize("family", FAMILY_TABLE, ids=FAMILY_TYPES)
def test_lora_layers_are_in_the_towers(family, tiny):
    _, model = tiny(family.model_type)
    if family.lora_layers is None:
        with pytest.raises(ValueError, match=repr(family.model_type)):
            _lora_targets("all", family)
        return
    names = [n for n, _ in model.named_modules()]
    for parts in ("all", "lock_text"):
        pattern = re.compile(_lora_targets(parts, family))
        assert any(pattern.fullmatch(n) for n in names), parts


@pytest.mark.parametrize("family", FAMILY_TABLE, ids=FAMILY_TYPES)
def test_quick_gelu_shortcut_where_the_model_has_quick_gelu(family, tiny):
    _, model = tiny(family.model_type)
    has = any(isinstance(m, QuickGELUActivation) for m in model.modules())
    assert ("quick_gelu" in family.fast_paths) == has


# -- nothing else decides by family --------------------------------------------
PACKAGE = Path(sklearn_clip.__file__).parent
# The table itself, and the toy builders that make each family's checkpoint.
EXEMPT = {"_models/families.py", "toy.py", "datasets.py"}
# A name the package's own output columns carry (clip0, clip1, ...) whatever
# the family: the default of CLIPEmbeddingTransformer's feature_prefix.
ALLOWED = {("_embedding.py", "clip")}
_ALTERNATIVES = "|".join(map(re.escape, FAMILY_TYPES))
# A model type as a word of its own: "siglip", not "SiglipImageProcessor" (an
# image processor, shared across families) nor "sklearn-clip".
FAMILY_WORD = re.compile(rf"(?<![\w-])({_ALTERNATIVES})(?![\w-])")
# "clip" is also the English word for a piece of video: in prose (a string
# with spaces, such as a message) it names no family.
PROSE_WORDS = {"clip"}
CLASS_NAMES = {f.model_class for f in FAMILY_TABLE} | {
    f.processor for f in FAMILY_TABLE
}
MODEL_LIKE = re.compile(r"(^|[._])model$")


def _sources():
    return sorted(p for p in PACKAGE.rglob("*.py") if _name(p) not in EXEMPT)


def _name(path):
    """The path inside the package (the file name for a file outside it)."""
    if path.is_relative_to(PACKAGE):
        return path.relative_to(PACKAGE).as_posix()
    return path.name


def _docstrings(tree):
    kinds = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def _family_strings(path):
    tree = ast.parse(path.read_text())
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and (_names_a_family(node.value) or node.value in CLASS_NAMES)
            and (_name(path), node.value) not in ALLOWED
        ):
            yield f"{_name(path)}:{node.lineno}: {node.value!r}"


def _names_a_family(text):
    words = {match.group(1) for match in FAMILY_WORD.finditer(text)}
    if " " in text.strip():
        words -= PROSE_WORDS
    return bool(words)


def _model_probes(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        probe = node.func.id == "hasattr" or (
            node.func.id == "getattr" and len(node.args) == 3
        )
        if probe and node.args and MODEL_LIKE.search(ast.unparse(node.args[0])):
            yield f"{_name(path)}:{node.lineno}: {ast.unparse(node)}"


def test_no_family_names_outside_the_table():
    found = [hit for path in _sources() for hit in _family_strings(path)]
    assert found == []


def test_no_attribute_probes_of_models():
    found = [hit for path in _sources() for hit in _model_probes(path)]
    assert found == []


def test_the_scan_sees_what_it_looks_for(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text(
        'if hasattr(self.model, "logit_bias"):\n'
        '    bias = getattr(handle.model, "logit_bias", None)\n'
        'if family == "altclip" or name == "SiglipModel":\n'
        "    pass\n"
    )
    assert len(list(_model_probes(path))) == 2
    assert len(list(_family_strings(path))) == 2
