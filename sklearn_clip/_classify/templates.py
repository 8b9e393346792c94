"""The built-in template sets: CLIP's English prompts, and their translations.

``templates=`` takes a set by name. The English sets are the ones OpenAI
published with CLIP; each language of
:mod:`sklearn_clip._classify.translations` translates the 80 ImageNet
templates one for one, and its ``"simple"`` and ``"openai_imagenet_7"`` sets
are the translations of the same English templates, picked by position, so
every language's sets have the counts of the English ones. Their names end in
the language's ISO 639-1 code: ``"openai_imagenet_de"``,
``"openai_imagenet_7_zh"``, ``"simple_ja"``.

Examples
--------
>>> from sklearn_clip._classify.templates import TEMPLATE_SETS
>>> [t.format("Hund") for t in TEMPLATE_SETS["openai_imagenet_7_de"][:2]]
['Hund, von mir fotografiert.', 'Schlechtes Foto: Hund.']
"""

from types import MappingProxyType

from sklearn_clip._classify.translations import de, es, fr, ja, zh

# The one template of the CLIP paper's simplest zero-shot baseline.
SIMPLE_TEMPLATES = ("a photo of a {}.",)

# The 80 ImageNet prompt templates that OpenAI published with CLIP.
OPENAI_IMAGENET_TEMPLATES = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

# The 7 of those 80 that the CLIP prompt-engineering notebook selected: almost
# the accuracy of all 80 for a tenth of the text encoding.
OPENAI_IMAGENET_7_TEMPLATES = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

# The translated sets, by ISO 639-1 code: German, French, Spanish,
# (simplified) Chinese, Japanese.
TRANSLATIONS = MappingProxyType(
    {
        "de": de.OPENAI_IMAGENET,
        "fr": fr.OPENAI_IMAGENET,
        "es": es.OPENAI_IMAGENET,
        "zh": zh.OPENAI_IMAGENET,
        "ja": ja.OPENAI_IMAGENET,
    }
)
LANGUAGES = tuple(TRANSLATIONS)


def _translated(english, translation):
    """The translations of the English ``english`` templates, by position."""
    return tuple(translation[OPENAI_IMAGENET_TEMPLATES.index(t)] for t in english)


def _template_sets():
    english = {
        "simple": SIMPLE_TEMPLATES,
        "openai_imagenet": OPENAI_IMAGENET_TEMPLATES,
        "openai_imagenet_7": OPENAI_IMAGENET_7_TEMPLATES,
    }
    translated = {
        f"{name}_{language}": _translated(templates, translation)
        for language, translation in TRANSLATIONS.items()
        for name, templates in english.items()
    }
    return MappingProxyType({**english, **translated})


# Every named set, English and translated.
TEMPLATE_SETS = _template_sets()
