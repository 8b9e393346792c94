"""The built-in template sets: CLIP's English ones, and their translations."""

import importlib.util
from pathlib import Path

import pytest

from sklearn_clip._classify.prompts import (
    OPENAI_IMAGENET_7_TEMPLATES,
    OPENAI_IMAGENET_TEMPLATES,
    SIMPLE_TEMPLATES,
    TEMPLATE_SETS,
    check_template,
    resolve_templates,
)
from sklearn_clip._classify.templates import LANGUAGES, TRANSLATIONS

ENGLISH = {
    "simple": SIMPLE_TEMPLATES,
    "openai_imagenet": OPENAI_IMAGENET_TEMPLATES,
    "openai_imagenet_7": OPENAI_IMAGENET_7_TEMPLATES,
}


def _open_clip_templates():
    """open_clip's own template lists, read from its installed file: importing
    the package needs torchvision, this one file imports nothing."""
    folder = importlib.util.find_spec("open_clip").submodule_search_locations[0]
    path = Path(folder) / "zero_shot_metadata.py"
    spec = importlib.util.spec_from_file_location("_open_clip_metadata", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fill = "{}"
    return (
        tuple(t(fill) for t in module.OPENAI_IMAGENET_TEMPLATES),
        tuple(t(fill) for t in module.SIMPLE_IMAGENET_TEMPLATES),
    )


def test_the_english_sets_are_open_clips_in_its_order():
    # The translated 7-template sets are picked by position in the 80: the
    # English sets must be OpenAI's, in OpenAI's order.
    all_80, chosen_7 = _open_clip_templates()
    assert OPENAI_IMAGENET_TEMPLATES == all_80
    assert OPENAI_IMAGENET_7_TEMPLATES == chosen_7


def test_five_languages_each_mirror_every_english_set():
    assert set(LANGUAGES) >= {"de", "fr", "es", "zh", "ja"}
    for language in LANGUAGES:
        for name, english in ENGLISH.items():
            translated = TEMPLATE_SETS[f"{name}_{language}"]
            assert len(translated) == len(english), (name, language)
            # Each template once: a repeated one would weigh double in the
            # ensemble, where its English original weighs once.
            assert len(set(translated)) == len(translated), (name, language)
            for template in translated:
                assert template.count("{}") == 1, template
                assert check_template(template) == template
                assert template.format("X") != template


def test_the_smaller_sets_translate_the_same_english_templates():
    for language in LANGUAGES:
        all_80 = TEMPLATE_SETS[f"openai_imagenet_{language}"]
        assert all_80 == TRANSLATIONS[language]
        for name in ("simple", "openai_imagenet_7"):
            positions = [OPENAI_IMAGENET_TEMPLATES.index(t) for t in ENGLISH[name]]
            assert TEMPLATE_SETS[f"{name}_{language}"] == tuple(
                all_80[i] for i in positions
            )


def test_each_translation_is_in_its_language():
    # A set pasted under the wrong code, or left in English, fails here.
    scripts = {
        "de": "äöüß",
        "fr": "éèàœ",
        "es": "áíóñ",
        "zh": "张的照片",
        "ja": "の写真",
    }
    for language, letters in scripts.items():
        text = "".join(TRANSLATIONS[language])
        assert set(letters) <= set(text), language
    assert not set("のその") & set("".join(TRANSLATIONS["zh"]))
    assert not set(TRANSLATIONS["de"]) & set(TRANSLATIONS["fr"])


@pytest.mark.parametrize("language", ["de", "fr", "es", "zh", "ja"])
def test_templates_resolves_the_language_sets_by_name(language):
    assert len(resolve_templates(f"openai_imagenet_{language}")) == 80
    assert len(resolve_templates(f"openai_imagenet_7_{language}")) == 7
    assert len(resolve_templates(f"simple_{language}")) == 1


def test_an_unknown_set_name_lists_the_language_sets():
    with pytest.raises(ValueError, match="openai_imagenet_7_ja"):
        resolve_templates("openai_imagenet_it")


def test_the_sets_cannot_be_changed_from_outside():
    with pytest.raises(TypeError):
        TEMPLATE_SETS["openai_imagenet_de"] = ("{}",)
    with pytest.raises(TypeError):
        TRANSLATIONS["de"] = ("{}",)
