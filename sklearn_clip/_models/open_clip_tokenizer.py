"""An open_clip checkpoint's tokenizer, as a transformers tokenizer equal to it.

open_clip tokenizes with the CLIP BPE (its ``SimpleTokenizer``) unless the
config names a Hugging Face tokenizer (``hf_tokenizer_name``, the SigLIP
ports). Either way the result here is a transformers tokenizer that gives
open_clip's token ids (checked against open_clip's own in the tests): its text
cleaning (``clean``: lower-casing, whitespace, SigLIP's ``canonicalize``) is
part of the tokenizer's normalizer, so it is saved with the model and every
backend applies it. A text tower that attends to its padding (bidirectional,
or SigLIP's) gets no attention mask, as in open_clip, and is padded with
open_clip's pad id (the model's config keeps it).

Where the files come from, offline first: the checkpoint folder (a
``tokenizer.json``, ``vocab.json`` and ``merges.txt``, a tokenizer saved by
open_clip, or open_clip's own ``bpe_simple_vocab_16e6.txt.gz``); for a named
Hugging Face tokenizer, that hub repo through the hub cache; otherwise a
one-line error names the files to put beside ``open_clip_config.json``.
"""

import gzip
import string
from pathlib import Path

from sklearn_clip._models.open_clip import BPE_VOCAB_NAME, CONFIG_NAME
from sklearn_clip._models.open_clip_towers import CLIP_BPE_SIZE

# The merges of open_clip's vocabulary file that its SimpleTokenizer uses.
_BPE_MERGES = CLIP_BPE_SIZE - 256 * 2 - 2
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model")


def _clean_steps(clean):
    """open_clip's text cleaning (after ftfy) as ``tokenizers`` normalizers."""
    from tokenizers import Regex, normalizers

    # ftfy's uncurl_quotes (open_clip runs ftfy first): the most common of
    # its repairs in captions; the others are not repeated (see the docs).
    quotes = [
        normalizers.Replace(Regex("[\u02bc\u2018-\u201b]"), "'"),
        normalizers.Replace(Regex("[\u201c-\u201f]"), '"'),
    ]
    whitespace = [
        *quotes,
        normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Strip(),
    ]
    if clean == "whitespace":
        return whitespace
    if clean == "lower":
        return [*whitespace, normalizers.Lowercase()]
    punctuation = "[" + "".join("\\" + c for c in string.punctuation) + "]"
    return [
        *quotes,
        normalizers.Replace(Regex(punctuation), ""),
        normalizers.Lowercase(),
        *whitespace[len(quotes) :],
    ]


def _clip_bpe_from_vocab_file(path):
    """The CLIP BPE from open_clip's ``bpe_simple_vocab_16e6.txt.gz``, with the
    vocabulary open_clip's ``SimpleTokenizer`` builds from it."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : _BPE_MERGES + 1]]
    characters = list(bytes_to_unicode().values())
    tokens = characters + [c + "</w>" for c in characters]
    tokens += ["".join(merge) for merge in merges] + [_BOS, _EOS]
    vocab = {token: i for i, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=merges, bos_token=_BOS, eos_token=_EOS)


def _missing_files(directory, names):
    return OSError(
        f"{str(directory)!r} holds an open_clip checkpoint but not its tokenizer: "
        f"put {names} beside {CONFIG_NAME} (the files open_clip's tokenizer reads)."
    )


def _clip_bpe(directory):
    from transformers import CLIPTokenizer

    has = {p.name for p in directory.iterdir()}
    if "tokenizer.json" in has or {"vocab.json", "merges.txt"} <= has:
        return CLIPTokenizer.from_pretrained(str(directory), local_files_only=True)
    if BPE_VOCAB_NAME in has:
        return _clip_bpe_from_vocab_file(directory / BPE_VOCAB_NAME)
    raise _missing_files(
        directory,
        f"the CLIP BPE's vocab.json and merges.txt (or tokenizer.json), as in "
        f"openai/clip-vit-base-patch32, or open_clip's {BPE_VOCAB_NAME}",
    )


def _named(directory, name, local_files_only):
    """A named Hugging Face tokenizer: from the folder, else from its hub repo."""
    from transformers import AutoTokenizer

    from sklearn_clip._models.loading import hub_snapshot

    if not any((directory / f).exists() for f in _TOKENIZER_FILES):
        try:
            directory = Path(hub_snapshot(name, None, local_files_only))
        except Exception:  # noqa: BLE001 - not cached, not reachable, not an id
            raise _missing_files(
                directory, f"the files of the tokenizer {name!r} (tokenizer.json)"
            ) from None
    return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)


def open_clip_tokenizer(directory, checkpoint, *, local_files_only=None):
    """The transformers tokenizer equal to the checkpoint's open_clip tokenizer.

    Parameters
    ----------
    directory : str or pathlib.Path
        The checkpoint folder.
    checkpoint : OpenClipCheckpoint
        What :func:`~sklearn_clip._models.open_clip.read_open_clip` read.
    local_files_only : bool, default=None
        For a named tokenizer not in the folder: never ask the hub.

    Returns
    -------
    transformers tokenizer
    """
    from tokenizers import normalizers

    directory, spec = Path(directory), checkpoint.tokenizer
    if spec["hf_name"] is None:
        tokenizer = _clip_bpe(directory)
    else:
        tokenizer = _named(directory, spec["hf_name"], local_files_only)
    backend = tokenizer.backend_tokenizer
    steps = _clean_steps(spec["clean"])
    if backend.normalizer is not None:
        steps.append(backend.normalizer)
    backend.normalizer = normalizers.Sequence(steps)
    tokenizer.model_max_length = spec["context_length"]
    if checkpoint.layout.bidirectional_text or spec["hf_name"] is not None:
        # open_clip passes no attention mask: these towers attend to padding.
        tokenizer.model_input_names = ["input_ids"]
        tokenizer.init_kwargs["model_input_names"] = ["input_ids"]
    return tokenizer
