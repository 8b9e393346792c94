"""How texts become a model's token ids, the same for every backend.

The tokenizer pads and truncates as transformers' zero-shot pipeline asks it
to: SigLIP-family text to exactly 64 tokens, other families to the longest
text of the batch and at most the model's context. Its truncation keeps the
end token, at which CLIP pools the text.
"""

import hashlib
import json
import warnings
from collections import Counter

from sklearn_clip.exceptions import TokenizerCoverageWarning

# More than this share of the letters of non-ASCII words unread: the
# tokenizer's training text (and so, in all likelihood, the text tower's)
# held too little of the language. Measured with CLIP's released vocabulary on
# Babel-ImageNet's class names, in translated templates and in English ones:
# 0-3 % for German, French, Spanish, Portuguese, Dutch and Turkish, 7-13 % for
# Italian and Polish, 15-16 % for Arabic, 22-42 % for Vietnamese, Russian,
# Ukrainian, Hindi and Thai, 56-65 % for Japanese, 85 % for Korean, over 98 %
# for Chinese and Greek (the zero-shot guide has the table).
UNCOVERED_LIMIT = 0.25
# Enough distinct words to measure the share on; more are sampled evenly.
_COVERAGE_SAMPLE = 4096


def token_ids(handle, texts):
    """``(input_ids, attention_mask)`` as int64 NumPy arrays (mask None where
    the family's tokenizer gives none); warns once about truncated texts."""
    padding = "max_length" if handle.pad_to_max_length else True
    # verbose=False: the one warning about truncation is ours, below.
    batch = handle.tokenizer(
        list(texts),
        padding=padding,
        truncation=True,
        max_length=handle.context_length,
        return_tensors="np",
        return_attention_mask=True,
        verbose=False,
    )
    too_long = _truncated(handle, texts, batch)
    if too_long:
        handle.warn_once(
            "truncation",
            f"{len(too_long)} text(s) are longer than the model's context of "
            f"{handle.context_length} tokens and were truncated "
            f"(first: {texts[too_long[0]][:60]!r}).",
        )
    mask = batch["attention_mask"].astype("int64")
    input_ids = batch["input_ids"].astype("int64")
    # Padded with the model's pad id where it is not the tokenizer's: an
    # open_clip text tower that attends to its padding saw id 0 there.
    input_ids[mask == 0] = handle.pad_token_id
    if "attention_mask" not in handle.tokenizer.model_input_names:
        mask = None  # the family's tokenizer gives none
    return input_ids, mask


def _truncated(handle, texts, batch):
    """Positions of the texts the tokenizer truncated."""
    encodings = getattr(batch, "encodings", None)
    if encodings:
        return [i for i, e in enumerate(encodings) if e.overflowing]
    ids = handle.tokenizer(list(texts), verbose=False)["input_ids"]
    return [i for i, seq in enumerate(ids) if len(seq) > handle.context_length]


def tokenizer_fingerprint(handle):
    """A hash of how the handle turns text into token ids."""
    tokenizer = handle.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Each call sets the backend's truncation and padding to its own
        # arguments; they say how the last call padded, not how text becomes
        # ids (the padding policy is in ``extra`` below).
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        described = json.dumps(state, sort_keys=True)
    else:
        described = json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = f"{type(tokenizer).__name__}|{handle.context_length}|"
    extra += f"{handle.pad_to_max_length}|{handle.pad_token_id}"
    return hashlib.sha256((extra + described).encode()).hexdigest()


def _letters(text):
    # Letters and digits only: punctuation (CJK full stops, dashes) carries
    # no label's meaning, and U+FFFD, what a byte piece decodes to, is none.
    return sum(c.isalnum() for c in text)


def unread_letters(tokenizer, texts):
    """``(unread, total)``: the letters of the words of ``texts`` that hold a
    non-ASCII character, and how many of them the tokenizer does not read as
    characters of its vocabulary.

    A letter is unread where it falls into the tokenizer's unknown token, or
    into byte pieces that each hold part of its UTF-8 encoding (byte-level
    BPE such as CLIP's, and SentencePiece's byte fallback, never give an
    unknown token: they spell what their vocabulary lacks byte by byte). Each
    word is tokenized alone (as in a sentence: these tokenizers split at
    spaces first; Chinese and Japanese, which write none, are one word per
    text), and each of its tokens but the special ones is decoded alone: a
    token holding whole characters gives them back, a byte piece gives
    U+FFFD, and the letters that do not come back are unread. Counting only
    the words that hold non-ASCII characters weighs a Chinese label alike in
    a Chinese or an English template; counting all their letters lets a
    German ``"ß"`` that comes as bytes weigh as one letter of its word.

    Examples
    --------
    >>> from sklearn_clip import load_model
    >>> from sklearn_clip._encoding.tokens import unread_letters
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> tokenizer = load_model(make_tiny_clip()).tokenizer  # ASCII letters only
    >>> unread_letters(tokenizer, ["a photo of a dog.", "a photo of a 狗."])
    (1, 1)
    """
    words = Counter(w for text in texts for w in text.split() if not w.isascii())
    words = dict(list(words.items())[:: max(1, len(words) // _COVERAGE_SAMPLE)])
    if not words:
        return 0, 0
    ids = tokenizer(list(words), add_special_tokens=False, verbose=False)
    special = set(tokenizer.all_special_ids)
    read = {}
    unread = total = 0
    for (word, count), sequence in zip(words.items(), ids["input_ids"]):
        for i in set(sequence) - read.keys():
            read[i] = 0 if i in special else _letters(tokenizer.decode([i]))
        letters = _letters(word)
        unread += count * max(0, letters - sum(read[i] for i in sequence))
        total += count * letters
    return unread, total


def warn_uncovered(handle, texts):
    """Warn when the handle's tokenizer reads too few of the texts' non-ASCII
    characters.

    Gives a :class:`~sklearn_clip.exceptions.TokenizerCoverageWarning` where
    more than :data:`UNCOVERED_LIMIT` of them are unread (see
    :func:`unread_letters`); returns that share. ASCII texts are not
    tokenized.
    """
    if all(text.isascii() for text in texts):
        return 0.0
    unread, total = unread_letters(handle.tokenizer, texts)
    share = unread / total if total else 0.0
    if share > UNCOVERED_LIMIT:
        first = next(text for text in texts if not text.isascii())
        warnings.warn(
            f"{unread} of the {total} letters in the prompts' non-ASCII words "
            f"({share:.0%}; first prompt: {first[:40]!r}) are unknown to this "
            "model's tokenizer, which reads them as unknown tokens or byte "
            "pieces: its text tower was trained on too little of this language "
            "for the class embeddings to carry the labels' meaning. Use a model "
            "with a multilingual text tower (AltCLIP, Chinese-CLIP, SigLIP 2, "
            "MetaCLIP 2 worldwide), or labels and templates in English.",
            TokenizerCoverageWarning,
            stacklevel=3,
        )
    return share
