"""Labels in other languages: which tokenizers read them, and the warning.

Three tiny checkpoints, each written with transformers' ``save_pretrained``
the way :mod:`sklearn_clip.toy` writes its models, differ in their tokenizer:

- AltCLIP (an XLM-R text tower) with transformers' own ``XLMRobertaTokenizer``
  pipeline (Unigram pieces, whitespace split and the ``▁`` word marker,
  ``<s> ... </s>``). XLM-R's real vocabulary (250,002 SentencePiece pieces
  trained on text in 100 languages) cannot be downloaded here, so the
  stand-in's pieces are trained with the ``tokenizers`` library on
  independent text in the five languages (CLIP_benchmark's Babel-ImageNet
  class names and machine-translated templates), and its alphabet holds the
  characters of the scripts these languages write (Latin-1, Latin
  Extended-A, kana, CJK ideographs, CJK and full-width punctuation), as
  XLM-R's vocabulary does. It is thus faithful in what the test is about:
  a tokenizer of a multilingual family that holds these characters.
- CLIP with CLIP's released byte-level BPE (the 49,408-token vocabulary that
  open_clip ships, read into transformers' ``CLIPTokenizer`` and checked
  against open_clip's own tokenizer): what measurement says OpenAI CLIP
  reads.
- The tiny CLIP of :func:`~sklearn_clip.toy.make_tiny_clip`, whose WordPiece
  vocabulary holds ASCII only.
"""

import gzip
import importlib.util
import json
import warnings
from pathlib import Path

import pytest
import torch

from sklearn_clip import CLIPZeroShotClassifier
from sklearn_clip._classify.templates import LANGUAGES, TEMPLATE_SETS
from sklearn_clip._encoding.tokens import UNCOVERED_LIMIT, unread_letters
from sklearn_clip.exceptions import TokenizerCoverageWarning
from sklearn_clip.toy import _build_model, _image_processor, _write_checkpoint

_SHAPE = {
    "image_size": 30,
    "patch_size": 2,
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 4,
    "context_length": 64,
}
# Babel-ImageNet's language codes for the package's.
_BABEL = {"de": "DE", "fr": "FR", "es": "ES", "zh": "ZH", "ja": "JA"}


def _installed(package, *parts):
    folder = importlib.util.find_spec(package).submodule_search_locations[0]
    return Path(folder, *parts)


def _benchmark_json(name):
    return json.loads(_installed("clip_benchmark", "datasets", name).read_text())


@pytest.fixture(scope="module")
def labels():
    """20 Babel-ImageNet class names per language: labels nobody wrote here."""
    babel = _benchmark_json("babel_imagenet.json")
    return {code: babel[key][1][:20] for code, key in _BABEL.items()}


def _checkpoint(path, family, tokenizer):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _build_model(family, tokenizer, **_SHAPE)
    processor = _image_processor(family, _SHAPE["image_size"], _SHAPE["patch_size"])
    _write_checkpoint(path, model, tokenizer, processor)
    return str(path)


def _xlm_r_stand_in():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizer

    babel = _benchmark_json("babel_imagenet.json")
    translated = _benchmark_json("nllb_dist13b_prompts.json")
    corpus = []
    for key in _BABEL.values():
        corpus += babel[key][1] + [t.replace("{}", " ") for t in translated[key]]
    blocks = [(0x21, 0x7E), (0xA1, 0x17F), (0x2010, 0x206F), (0x3000, 0x30FF)]
    blocks += [(0x4E00, 0x9FFF), (0xFF01, 0xFFEF)]
    alphabet = [chr(c) for a, b in blocks for c in range(a, b + 1)]
    alphabet = [c for c in alphabet if c.isprintable() and not c.isspace()]
    backend = Tokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()]
    )
    trainer = trainers.UnigramTrainer(
        vocab_size=len(alphabet) + 2000,
        initial_alphabet=alphabet,
        max_piece_length=8,
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    pieces = [tuple(p) for p in json.loads(backend.to_str())["model"]["vocab"]]
    # XLM-R's order: <s>, <pad>, </s>, <unk> (id 3), the pieces, <mask>.
    special = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    return XLMRobertaTokenizer(vocab=special + pieces + [("<mask>", 0.0)])


def _clip_released_bpe():
    """CLIP's tokenizer: its released merges as open_clip ships them, and the
    vocabulary they make (bytes, bytes ending a word, the merges, 2 specials)."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    text = gzip.open(_installed("open_clip", "bpe_simple_vocab_16e6.txt.gz")).read()
    merges = [tuple(m.split()) for m in text.decode().split("\n")[1 : 49152 - 256 - 1]]
    tokens = list(bytes_to_unicode().values())
    tokens += [t + "</w>" for t in tokens] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)


@pytest.fixture(scope="module")
def altclip_path(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("altclip"), "altclip", _xlm_r_stand_in())


@pytest.fixture(scope="module")
def clip_bpe_path(tmp_path_factory):
    return _checkpoint(
        tmp_path_factory.mktemp("clip-bpe"), "clip", _clip_released_bpe()
    )


def _tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _fit(path, labels, templates):
    """Fit a zero-shot classifier; the coverage warnings it gave."""
    clf = CLIPZeroShotClassifier(
        path, candidate_labels=labels, templates=templates, dtype="float32"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit()
    assert clf.class_embeddings_.shape == (len(set(labels)), _SHAPE["hidden_size"])
    return [w for w in caught if w.category is TokenizerCoverageWarning]


def test_clips_tokenizer_here_is_open_clips_own(labels):
    # open_clip's SimpleTokenizer (OpenAI's code), loaded from its file: the
    # package's __init__ needs torchvision, this file does not.
    path = _installed("open_clip", "tokenizer.py")
    spec = importlib.util.spec_from_file_location("_open_clip_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reference = module.SimpleTokenizer()
    tokenizer = _clip_released_bpe()
    assert len(tokenizer) == 49408
    texts = ["a photo of a dog."] + [
        template.format(label)
        for language in LANGUAGES
        for template in TEMPLATE_SETS[f"openai_imagenet_7_{language}"]
        for label in labels[language]
    ]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert ids == [reference.encode(text) for text in texts]


def test_the_multilingual_tokenizer_reads_every_set_with_no_unknown_token(
    altclip_path, labels
):
    tokenizer = _tokenizer(altclip_path)
    assert type(tokenizer).__name__ == "XLMRobertaTokenizer"
    for language in LANGUAGES:
        for name in ("simple", "openai_imagenet_7", "openai_imagenet"):
            prompts = [
                template.format(label)
                for template in TEMPLATE_SETS[f"{name}_{language}"]
                for label in labels[language]
            ]
            ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
            assert tokenizer.unk_token_id not in {i for row in ids for i in row}
            unread, total = unread_letters(tokenizer, prompts)
            assert (unread, total > 0) == (0, True), (name, language)


@pytest.mark.parametrize("language", ["de", "fr", "es", "zh", "ja"])
def test_a_multilingual_model_takes_labels_in_each_language_silently(
    altclip_path, labels, language
):
    assert _fit(altclip_path, labels[language], f"openai_imagenet_7_{language}") == []


def test_clip_spells_chinese_in_bytes_and_reads_german_umlauts_whole():
    # What CLIP's own tokenizer does: a Chinese character is three byte
    # pieces, none of them a character; German umlauts are tokens of its
    # vocabulary, "ß" is two byte pieces.
    tokenizer = _clip_released_bpe()
    pieces = tokenizer("狗", add_special_tokens=False)["input_ids"]
    assert [tokenizer.decode([i]) for i in pieces] == ["\ufffd"] * 3
    assert unread_letters(tokenizer, ["a photo of a 狗."]) == (1, 1)
    käfer = tokenizer("Käfer", add_special_tokens=False)["input_ids"]
    assert [tokenizer.decode([i]) for i in käfer] == ["k", "ä", "fer"]
    assert unread_letters(tokenizer, ["Käfer"]) == (0, 5)
    strasse = tokenizer("Straße", add_special_tokens=False)["input_ids"]
    assert [tokenizer.decode([i]) for i in strasse].count("\ufffd") == 2
    assert unread_letters(tokenizer, ["Straße"]) == (1, 6)


@pytest.mark.parametrize(
    "language, warned",
    [("de", False), ("fr", False), ("es", False)] + [("zh", True), ("ja", True)],
)
def test_clip_warns_for_the_languages_its_tokenizer_spells_in_bytes(
    clip_bpe_path, labels, language, warned
):
    tokenizer = _tokenizer(clip_bpe_path)
    prompts = [
        template.format(label)
        for template in TEMPLATE_SETS[f"openai_imagenet_{language}"]
        for label in labels[language]
    ]
    unread, total = unread_letters(tokenizer, prompts)
    assert (unread / total > UNCOVERED_LIMIT) is warned
    caught = _fit(clip_bpe_path, labels[language], f"openai_imagenet_7_{language}")
    assert len(caught) == warned
    # Chinese or Japanese labels in English templates: the labels are lost
    # all the same.
    caught = _fit(clip_bpe_path, labels[language], "simple")
    assert len(caught) == warned


def test_the_warning_counts_the_unread_letters(tiny_clip_path):
    [warning] = _fit(tiny_clip_path, ["狗", "猫", "汽车"], "simple")
    message = str(warning.message)
    assert message.startswith("4 of the 4 letters")
    assert "'a photo of a 汽车.'" in message and "AltCLIP" in message
    # The toy vocabulary holds ASCII only: a German word with an umlaut is
    # one unknown token, all its letters unread.
    assert len(_fit(tiny_clip_path, ["Käfer", "Bär"], "simple")) == 1
    assert _fit(tiny_clip_path, ["Kaefer", "Baer"], "simple_de") == []
    assert _fit(tiny_clip_path, ["dog", "cat"], "openai_imagenet_7") == []
