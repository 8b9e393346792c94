"""How texts become a model's token ids, the same for every backend.

The tokenizer pads and truncates as transformers' zero-shot pipeline asks it
to: SigLIP-family text to exactly 64 tokens, other families to the longest
text of the batch and at most the model's context. Its truncation keeps the
end token, at which CLIP pools the text.
"""

import hashlib
import json


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
    mask = batch.get("attention_mask")
    input_ids = batch["input_ids"].astype("int64")
    return input_ids, None if mask is None else mask.astype("int64")


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
